/* SPDX-License-Identifier: Apache-2.0 */
/* The subscription index: one node per filter level. Children, '+' and '#'
 * included, sit in a per-node open-addressing table so one node can carry
 * ~100k children ("devices/<id>/..."). Nodes are created on demand and a
 * branch is pruned as soon as it holds nothing, so the memory of a removed
 * subscription returns. Sizes are chosen for a million subscriptions: a
 * node is 19 bytes plus its level, a one-child table 24, one subscription
 * 24, so each fits malloc's smallest (32-byte) chunk for levels of up to
 * 5 bytes. */
#include "node/mqtt/trie.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "node/mqtt/level_impl.h"

/* One subscription, or one member of a shared group. */
typedef struct sub {
    void *owner;
    sub_opts opts;
} sub;

/* Normal subscriptions of one node, in no particular order (removal moves
 * the last one into the hole). From IDX_MIN slots on, an owner -> position
 * index follows v[cap] in the same allocation (2*cap uint32 slots holding
 * position+1, 0 = free), so replacing or removing one of 100k subscribers
 * of a fan-out filter stays O(1) instead of a scan. cap is a power of two. */
typedef struct subv {
    uint32_t n, cap;
    sub v[];
} subv;

#define IDX_MIN 16u

/* A shared group at one node. Members stay in join order because sticky
 * picks the first eligible one; groups are small, so lookups scan. */
typedef struct sgroup {
    struct sgroup *next;
    struct sgroup *all_prev, *all_next; /* every group of the trie (trie_groups_each) */
    uint8_t *key;                       /* "group/filter": the group's name across the cluster */
    uint32_t key_len;
    sub *v;
    atomic_uint rr; /* round-robin cursor, bumped by concurrent matches */
    uint32_t n, cap;
    uint16_t len;
    uint8_t name[];
} sgroup;

typedef struct node node;

/* Children and shared groups of one node; allocated only once it has any.
 * Groups are rare, so they live here rather than cost every node 8 bytes.
 * The slots are a node/mqtt/level_impl.h child table of node pointers. */
typedef struct kids {
    sgroup *groups;
    uint32_t n, cap; /* cap is 0 or a power of two */
    void *slot[];
} kids;

/* Flags saying a '+' or '#' child exists, so matching probes for them
 * only when they do. */
enum { HAS_PLUS = 1, HAS_HASH = 2 };

struct node {
    kids *kids;
    subv *subs;
    uint16_t len;
    uint8_t flags;
    uint8_t level[];
};

struct trie {
    node *root;
    trie_strategy strategy;
    uint64_t seed;
    size_t count, groups;
    sgroup *all; /* every shared group, for trie_groups_each */
    /* Groups whose last member left, kept for a few membership refreshes
     * (trie_keep_ghosts): other nodes may still choose this one for them. */
    struct ghost *ghosts;
    bool keep_ghosts;
};

typedef struct ghost {
    struct ghost *next;
    uint32_t key_len, group_len;
    uint32_t age; /* refreshes since it became a ghost */
    uint8_t key[];
} ghost;

static void ghost_drop_key(trie *t, const uint8_t *key, size_t len)
{
    for (ghost **gp = &t->ghosts; *gp;) {
        ghost *g = *gp;
        if (g->key_len == len && memcmp(g->key, key, len) == 0) {
            *gp = g->next;
            sh_free(g, sizeof(*g) + g->key_len);
        } else {
            gp = &g->next;
        }
    }
}

#define NONE UINT32_MAX

/* --- nodes and their children ------------------------------------------- */

static level_key node_key(const void *c)
{
    const node *n = c;
    return (level_key){n->level, n->len};
}

static size_t node_size(const node *n)
{
    return offsetof(node, level) + n->len;
}

static size_t kids_size(uint32_t cap)
{
    return sizeof(kids) + (size_t)cap * sizeof(node *);
}

static node *node_new(const uint8_t *l, size_t len)
{
    node *n = sh_malloc(offsetof(node, level) + len);
    n->kids = NULL;
    n->subs = NULL;
    n->len = (uint16_t)len;
    n->flags = 0;
    if (len) {
        memcpy(n->level, l, len);
    }
    return n;
}

static void **kids_slot(const trie *t, kids *k, const uint8_t *l, size_t len)
{
    return level_slot(k->slot, k->cap, t->seed, node_key, l, len);
}

static node *kids_get(const trie *t, kids *k, const uint8_t *l, size_t len)
{
    void **slot = k && k->cap ? kids_slot(t, k, l, len) : NULL;
    return slot ? *slot : NULL;
}

static kids *kids_resize(const trie *t, kids *old, uint32_t cap)
{
    kids *k = sh_calloc(1, kids_size(cap));
    k->cap = cap;
    if (!old) {
        return k;
    }
    k->groups = old->groups;
    k->n = old->n;
    level_rehash(k->slot, cap, old->slot, old->cap, t->seed, node_key);
    sh_free(old, kids_size(old->cap));
    return k;
}

static kids *kids_of(const trie *t, node *n)
{
    if (!n->kids) {
        n->kids = kids_resize(t, NULL, 0);
    }
    return n->kids;
}

static void kids_put(const trie *t, node *n, node *c)
{
    kids *k = kids_of(t, n);
    if (level_tab_full(k->n, k->cap)) {
        k = n->kids = kids_resize(t, k, k->cap ? k->cap * 2 : 1);
    }
    *kids_slot(t, k, c->level, c->len) = c;
    k->n++;
}

/* Drop an empty table, or halve a sparse one. */
static void kids_tidy(const trie *t, node *n)
{
    kids *k = n->kids;
    if (k->n == 0 && !k->groups) {
        sh_free(k, kids_size(k->cap));
        n->kids = NULL;
    } else if (k->n == 0 && k->cap) {
        n->kids = kids_resize(t, k, 0);
    } else if (level_tab_sparse(k->n, k->cap)) {
        n->kids = kids_resize(t, k, k->cap / 2);
    }
}

static uint8_t wild_flag(const uint8_t *l, size_t len)
{
    return level_is(l, len, '+') ? HAS_PLUS : (level_is(l, len, '#') ? HAS_HASH : 0);
}

static node *child_add(const trie *t, node *n, const uint8_t *l, size_t len)
{
    node *c = kids_get(t, n->kids, l, len);
    if (!c) {
        c = node_new(l, len);
        kids_put(t, n, c);
        n->flags |= wild_flag(l, len);
    }
    return c;
}

static void child_detach(const trie *t, node *n, const uint8_t *l, size_t len)
{
    kids *k = n->kids;
    level_erase(k->slot, k->cap, (uint32_t)(kids_slot(t, k, l, len) - k->slot), t->seed, node_key);
    k->n--;
    n->flags &= (uint8_t)~wild_flag(l, len);
    kids_tidy(t, n);
}

/* Whether removing one subscription below n must leave n in place. */
static bool node_busy(const node *n)
{
    return n->subs || (n->kids && (n->kids->groups || n->kids->n > 1));
}

/* The one child of a node on a branch being pruned, if any. */
static node *only_child(const node *n)
{
    return n->kids ? level_first(n->kids->slot, n->kids->cap) : NULL;
}

/* --- normal subscriptions ----------------------------------------------- */

static size_t subv_size(uint32_t cap)
{
    size_t size = sizeof(subv) + (size_t)cap * sizeof(sub);
    return cap >= IDX_MIN ? size + 2 * (size_t)cap * sizeof(uint32_t) : size;
}

static uint32_t *subv_idx(subv *s)
{
    return s->cap >= IDX_MIN ? (uint32_t *)&s->v[s->cap] : NULL;
}

static uint32_t ptr_hash(const void *p)
{
    return (uint32_t)(((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull) >> 32);
}

/* Index slot holding owner, or the free one where it would go (load <= 1/2). */
static uint32_t idx_find(subv *s, const void *owner)
{
    uint32_t *idx = subv_idx(s);
    uint32_t mask = 2 * s->cap - 1;
    for (uint32_t i = ptr_hash(owner) & mask;; i = (i + 1) & mask) {
        if (idx[i] == 0 || s->v[idx[i] - 1].owner == owner) {
            return i;
        }
    }
}

static void idx_erase(subv *s, uint32_t i)
{
    uint32_t *idx = subv_idx(s);
    uint32_t mask = 2 * s->cap - 1;
    for (uint32_t j = (i + 1) & mask; idx[j]; j = (j + 1) & mask) {
        uint32_t home = ptr_hash(s->v[idx[j] - 1].owner) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            idx[i] = idx[j];
            i = j;
        }
    }
    idx[i] = 0;
}

static subv *subv_resize(subv *s, uint32_t cap)
{
    s = sh_realloc(s, subv_size(s->cap), subv_size(cap));
    s->cap = cap;
    uint32_t *idx = subv_idx(s);
    if (idx) {
        memset(idx, 0, 2 * (size_t)cap * sizeof(uint32_t));
        for (uint32_t k = 0; k < s->n; k++) {
            idx[idx_find(s, s->v[k].owner)] = k + 1;
        }
    }
    return s;
}

static uint32_t subv_find(subv *s, const void *owner)
{
    if (!s) {
        return NONE;
    }
    if (subv_idx(s)) {
        uint32_t pos = subv_idx(s)[idx_find(s, owner)];
        return pos ? pos - 1 : NONE;
    }
    for (uint32_t k = 0; k < s->n; k++) {
        if (s->v[k].owner == owner) {
            return k;
        }
    }
    return NONE;
}

static void subv_add(subv **sp, void *owner, const sub_opts *o)
{
    subv *s = *sp;
    if (!s) {
        s = sh_malloc(subv_size(1));
        s->n = 0;
        s->cap = 1;
    } else if (s->n == s->cap) {
        s = subv_resize(s, s->cap * 2);
    }
    s->v[s->n].owner = owner;
    s->v[s->n].opts = *o;
    s->n++;
    if (subv_idx(s)) {
        subv_idx(s)[idx_find(s, owner)] = s->n;
    }
    *sp = s;
}

static void subv_del(subv **sp, uint32_t k)
{
    subv *s = *sp;
    uint32_t last = s->n - 1;
    if (subv_idx(s)) {
        idx_erase(s, idx_find(s, s->v[k].owner));
        if (k != last) {
            subv_idx(s)[idx_find(s, s->v[last].owner)] = k + 1;
        }
    }
    s->v[k] = s->v[last];
    s->n--;
    if (s->n == 0) {
        sh_free(s, subv_size(s->cap));
        *sp = NULL;
    } else if (s->n <= s->cap / 4) {
        *sp = subv_resize(s, s->cap / 2);
    }
}

/* --- shared groups ------------------------------------------------------ */

static sgroup **group_find(kids *k, mqtt_bytes name)
{
    sgroup **gp = &k->groups;
    while (*gp && !((*gp)->len == name.len && memcmp((*gp)->name, name.p, name.len) == 0)) {
        gp = &(*gp)->next;
    }
    return gp;
}

static sgroup *group_new(trie *t, mqtt_bytes name, mqtt_bytes filter)
{
    sgroup *g = sh_malloc(offsetof(sgroup, name) + name.len);
    g->next = NULL;
    g->key_len = (uint32_t)(name.len + 1 + filter.len);
    g->key = sh_malloc(g->key_len);
    memcpy(g->key, name.p, name.len);
    g->key[name.len] = '/';
    memcpy(g->key + name.len + 1, filter.p, filter.len);
    ghost_drop_key(t, g->key, g->key_len);
    g->all_prev = NULL;
    g->all_next = t->all;
    if (t->all) {
        t->all->all_prev = g;
    }
    t->all = g;
    g->v = NULL;
    atomic_init(&g->rr, 0);
    g->n = 0;
    g->cap = 0;
    g->len = (uint16_t)name.len;
    memcpy(g->name, name.p, name.len);
    return g;
}

static void group_free(trie *t, sgroup *g)
{
    if (g->all_prev) {
        g->all_prev->all_next = g->all_next;
    } else {
        t->all = g->all_next;
    }
    if (g->all_next) {
        g->all_next->all_prev = g->all_prev;
    }
    if (t->keep_ghosts) {
        ghost *h = sh_malloc(sizeof(*h) + g->key_len);
        h->key_len = g->key_len;
        h->group_len = g->len;
        h->age = 0;
        memcpy(h->key, g->key, g->key_len);
        h->next = t->ghosts;
        t->ghosts = h;
    }
    sh_free(g->key, g->key_len);
    sh_free(g->v, (size_t)g->cap * sizeof(sub));
    sh_free(g, offsetof(sgroup, name) + g->len);
}

static uint32_t member_find(const sgroup *g, const void *owner)
{
    for (uint32_t k = 0; k < g->n; k++) {
        if (g->v[k].owner == owner) {
            return k;
        }
    }
    return NONE;
}

static void member_add(sgroup *g, void *owner, const sub_opts *o)
{
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 2;
        g->v = sh_realloc(g->v, (size_t)g->cap * sizeof(sub), (size_t)cap * sizeof(sub));
        g->cap = cap;
    }
    g->v[g->n].owner = owner;
    g->v[g->n].opts = *o;
    g->n++;
}

/* Keeps join order (sticky depends on it). */
static void member_del(sgroup *g, uint32_t k)
{
    memmove(&g->v[k], &g->v[k + 1], (size_t)(g->n - k - 1) * sizeof(sub));
    g->n--;
    if (g->n && g->cap > 2 && g->n <= g->cap / 4) {
        uint32_t cap = g->cap / 2;
        g->v = sh_realloc(g->v, (size_t)g->cap * sizeof(sub), (size_t)cap * sizeof(sub));
        g->cap = cap;
    }
}

/* Thread-local xorshift64: matches run concurrently and rand() would
 * serialise them on libc's lock. */
static uint32_t rng_next(void)
{
    static _Thread_local uint64_t state;
    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = ((uint64_t)ts.tv_nsec << 24) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&state;
        state |= 1;
    }
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)(state >> 32);
}

/* One member for a message: the strategy gives the starting point and the
 * first eligible member from there wins. With none eligible the starting
 * one takes it anyway, so the message waits in its session queue. */
static const sub *group_pick(const trie *t, sgroup *g, trie_eligible_fn eligible, uint64_t pick)
{
    uint32_t start = 0;
    if (t->strategy == TRIE_SHARED_HASH_CLIENT_ID || t->strategy == TRIE_SHARED_HASH_TOPIC) {
        start = (uint32_t)(pick % g->n);
    } else if (t->strategy == TRIE_SHARED_ROUND_ROBIN) {
        start = atomic_fetch_add_explicit(&g->rr, 1, memory_order_relaxed) % g->n;
    } else if (t->strategy == TRIE_SHARED_RANDOM) {
        start = rng_next() % g->n;
    }
    for (uint32_t i = 0; i < g->n && eligible; i++) {
        const sub *m = &g->v[(start + i) % g->n];
        if (eligible(m->owner)) {
            return m;
        }
    }
    return &g->v[start];
}

/* --- add and remove ----------------------------------------------------- */

static bool normal_add(trie *t, node *n, void *owner, const sub_opts *o)
{
    uint32_t k = subv_find(n->subs, owner);
    if (k != NONE) {
        n->subs->v[k].opts = *o;
        return true;
    }
    subv_add(&n->subs, owner, o);
    t->count++;
    return false;
}

static bool shared_add(trie *t, node *n, mqtt_bytes name, mqtt_bytes filter, void *owner, const sub_opts *o)
{
    sgroup **gp = group_find(kids_of(t, n), name);
    if (!*gp) {
        *gp = group_new(t, name, filter);
        t->groups++;
    }
    uint32_t k = member_find(*gp, owner);
    if (k != NONE) {
        (*gp)->v[k].opts = *o;
        return true;
    }
    member_add(*gp, owner, o);
    t->count++;
    return false;
}

static bool normal_del(trie *t, node *n, const void *owner)
{
    uint32_t k = subv_find(n->subs, owner);
    if (k == NONE) {
        return false;
    }
    subv_del(&n->subs, k);
    t->count--;
    return true;
}

static bool shared_del(trie *t, node *n, mqtt_bytes name, const void *owner)
{
    sgroup **gp = n->kids ? group_find(n->kids, name) : NULL;
    sgroup *g = gp ? *gp : NULL;
    uint32_t k = g ? member_find(g, owner) : NONE;
    if (k == NONE) {
        return false;
    }
    member_del(g, k);
    t->count--;
    if (g->n == 0) {
        *gp = g->next;
        group_free(t, g);
        t->groups--;
        kids_tidy(t, n);
    }
    return true;
}

void trie_add(trie *t, mqtt_bytes filter, mqtt_bytes group, void *owner, const sub_opts *o, bool *replaced)
{
    filter = level_nonnull(filter);
    group = level_nonnull(group);
    node *n = t->root;
    for (uint32_t pos = 0; pos <= filter.len;) {
        uint32_t end = level_end(filter, pos);
        n = child_add(t, n, filter.p + pos, end - pos);
        pos = end + 1;
    }
    bool rep = group.len ? shared_add(t, n, group, filter, owner, o) : normal_add(t, n, owner, o);
    if (replaced) {
        *replaced = rep;
    }
}

static void node_free(node *n)
{
    if (n->kids) {
        sh_free(n->kids, kids_size(n->kids->cap));
    }
    sh_free(n, node_size(n));
}

/* Cut the branch below `cut` at level l: every node on it is empty and has
 * exactly one child, the next one on the removed filter's path. */
static void prune(const trie *t, node *cut, const uint8_t *l, size_t len)
{
    node *c = kids_get(t, cut->kids, l, len);
    child_detach(t, cut, l, len);
    while (c) {
        node *next = only_child(c);
        node_free(c);
        c = next;
    }
}

bool trie_remove(trie *t, mqtt_bytes filter, mqtt_bytes group, void *owner)
{
    filter = level_nonnull(filter);
    group = level_nonnull(group);
    node *n = t->root, *cut = t->root;
    uint32_t cut_pos = 0, cut_end = level_end(filter, 0);
    for (uint32_t pos = 0; pos <= filter.len;) {
        uint32_t end = level_end(filter, pos);
        node *c = kids_get(t, n->kids, filter.p + pos, end - pos);
        if (!c) {
            return false;
        }
        /* The deepest node that keeps something else: pruning stops there. */
        if (node_busy(n)) {
            cut = n;
            cut_pos = pos;
            cut_end = end;
        }
        n = c;
        pos = end + 1;
    }
    if (!(group.len ? shared_del(t, n, group, owner) : normal_del(t, n, owner))) {
        return false;
    }
    if (!n->subs && !n->kids) {
        prune(t, cut, filter.p + cut_pos, cut_end - cut_pos);
    }
    return true;
}

/* --- matching ----------------------------------------------------------- */

/* Matching walks with an explicit stack: a topic may have thousands of
 * levels and worker stacks are not the place to find out. */
typedef struct frame {
    node *n;
    uint32_t pos; /* start of the next topic level; > topic.len when done */
} frame;

typedef struct walk {
    const trie *t;
    mqtt_bytes topic;
    trie_eligible_fn eligible;
    trie_share_gate_fn gate;
    void *gate_arg;
    trie_hit *hits;
    size_t cap, total;
    frame *st;
    size_t depth, room;
    frame small[32];
} walk;

static void push(walk *w, node *n, uint32_t pos)
{
    if (w->depth == w->room) {
        size_t room = w->room * 2;
        if (w->st == w->small) {
            w->st = sh_malloc(room * sizeof(frame));
            memcpy(w->st, w->small, sizeof(w->small));
        } else {
            w->st = sh_realloc(w->st, w->room * sizeof(frame), room * sizeof(frame));
        }
        w->room = room;
    }
    w->st[w->depth].n = n;
    w->st[w->depth].pos = pos;
    w->depth++;
}

static void hit(walk *w, const sub *s, bool shared)
{
    if (w->total < w->cap) {
        w->hits[w->total].owner = s->owner;
        w->hits[w->total].opts = s->opts;
        w->hits[w->total].shared = shared;
    }
    w->total++;
}

static void emit(walk *w, const node *n)
{
    for (uint32_t k = 0; n->subs && k < n->subs->n; k++) {
        hit(w, &n->subs->v[k], false);
    }
    for (sgroup *g = n->kids ? n->kids->groups : NULL; g; g = g->next) {
        uint64_t pick = 0;
        if (w->gate && !w->gate(w->gate_arg, g->key, g->key_len, &pick)) {
            continue; /* another node delivers this group's copy */
        }
        hit(w, group_pick(w->t, g, w->eligible, pick), true);
    }
}

static node *wild_child(const walk *w, const node *n, uint8_t flag)
{
    if (!(n->flags & flag)) {
        return NULL;
    }
    return kids_get(w->t, n->kids, (const uint8_t *)(flag == HAS_PLUS ? "+" : "#"), 1);
}

static void step(walk *w, frame f)
{
    node *hash = wild_child(w, f.n, HAS_HASH);
    if (f.pos > w->topic.len) {
        emit(w, f.n);
        /* "a/#" also matches "a" (MQTT §4.7.1.2). */
        if (hash) {
            emit(w, hash);
        }
        return;
    }
    uint32_t end = level_end(w->topic, f.pos);
    const uint8_t *l = w->topic.p + f.pos;
    /* MQTT §4.7.2: a filter starting with a wildcard does not match a topic
     * starting with '$'. */
    bool dollar = f.pos == 0 && w->topic.len && w->topic.p[0] == '$';
    if (hash && !dollar) {
        emit(w, hash);
    }
    node *plus = dollar ? NULL : wild_child(w, f.n, HAS_PLUS);
    if (plus) {
        push(w, plus, end + 1);
    }
    /* Topic names hold no wildcards (§4.7.1); never let one reach '+'/'#'. */
    node *c = wild_flag(l, end - f.pos) ? NULL : kids_get(w->t, f.n->kids, l, end - f.pos);
    if (c) {
        push(w, c, end + 1);
    }
}

size_t trie_match(trie *t, mqtt_bytes topic, trie_eligible_fn eligible, trie_hit *hits, size_t cap)
{
    return trie_match_gated(t, topic, eligible, NULL, NULL, hits, cap);
}

size_t trie_match_gated(trie *t, mqtt_bytes topic, trie_eligible_fn eligible, trie_share_gate_fn gate, void *gate_arg,
                        trie_hit *hits, size_t cap)
{
    walk w;
    w.t = t;
    w.topic = level_nonnull(topic);
    w.eligible = eligible;
    w.gate = gate;
    w.gate_arg = gate_arg;
    w.hits = hits;
    w.cap = cap;
    w.total = 0;
    w.st = w.small;
    w.depth = 0;
    w.room = sizeof(w.small) / sizeof(w.small[0]);
    push(&w, t->root, 0);
    while (w.depth) {
        w.depth--;
        step(&w, w.st[w.depth]);
    }
    if (w.st != w.small) {
        sh_free(w.st, w.room * sizeof(frame));
    }
    return w.total;
}

/* --- lifecycle ---------------------------------------------------------- */

trie *trie_new(trie_strategy strategy)
{
    trie *t = sh_malloc(sizeof(*t));
    t->strategy = strategy;
    t->seed = level_seed(t);
    t->count = 0;
    t->groups = 0;
    t->all = NULL;
    t->ghosts = NULL;
    t->keep_ghosts = false;
    t->root = node_new(NULL, 0);
    return t;
}

static void node_release(trie *t, node *n)
{
    if (n->subs) {
        sh_free(n->subs, subv_size(n->subs->cap));
    }
    while (n->kids && n->kids->groups) {
        sgroup *g = n->kids->groups;
        n->kids->groups = g->next;
        group_free(t, g);
    }
    node_free(n);
}

/* Iterative for the same reason as matching: the trie can be deep. */
void trie_free(trie *t)
{
    if (!t) {
        return;
    }
    level_stack st;
    level_stack_init(&st, t->root);
    for (node *n; (n = level_stack_pop(&st));) {
        if (n->kids) {
            level_stack_push_children(&st, n->kids->slot, n->kids->cap);
        }
        node_release(t, n);
    }
    level_stack_free(&st);
    t->keep_ghosts = false;
    while (t->ghosts) {
        ghost *g = t->ghosts;
        t->ghosts = g->next;
        sh_free(g, sizeof(*g) + g->key_len);
    }
    sh_free(t, sizeof(*t));
}

size_t trie_count(const trie *t)
{
    return t->count;
}

size_t trie_group_count(const trie *t)
{
    return t->groups;
}

bool trie_has_group(const trie *t, mqtt_bytes filter, mqtt_bytes group)
{
    filter = level_nonnull(filter);
    group = level_nonnull(group);
    node *n = t->root;
    for (uint32_t pos = 0; pos <= filter.len;) {
        uint32_t end = level_end(filter, pos);
        n = kids_get(t, n->kids, filter.p + pos, end - pos);
        if (!n) {
            return false;
        }
        pos = end + 1;
    }
    return n->kids && *group_find(n->kids, group) != NULL;
}

void trie_groups_each(const trie *t, trie_eligible_fn eligible, trie_group_fn fn, void *arg)
{
    for (const sgroup *g = t->all; g; g = g->all_next) {
        uint32_t n = g->n;
        if (eligible) {
            n = 0;
            for (uint32_t k = 0; k < g->n; k++) {
                n += eligible(g->v[k].owner);
            }
        }
        fn(arg, g->key, g->key_len, n);
    }
}

void trie_keep_ghosts(trie *t, bool keep)
{
    t->keep_ghosts = keep;
}

size_t trie_ghosts_each(const trie *t, trie_ghost_fn fn, void *arg)
{
    size_t n = 0;
    for (const ghost *g = t->ghosts; g; g = g->next, n++) {
        if (fn) {
            fn(arg, g->key, g->key_len, g->group_len);
        }
    }
    return n;
}

void trie_ghosts_age(trie *t, uint32_t max_age)
{
    for (ghost **gp = &t->ghosts; *gp;) {
        ghost *g = *gp;
        if (++g->age > max_age) {
            *gp = g->next;
            sh_free(g, sizeof(*g) + g->key_len);
        } else {
            gp = &g->next;
        }
    }
}
