/* SPDX-License-Identifier: Apache-2.0 */
/* Retained messages in a trie of topic levels, so a wildcard filter on
 * subscribe walks only the branches it can match ("a/+/c" visits the
 * children of "a", "a/#" the subtree under "a") instead of every topic.
 * Children sit in a per-node open-addressing table (100k devices under one
 * level is normal). Empty branches are pruned on delete.
 *
 * Messages with a Message Expiry also sit in a binary min-heap of their
 * nodes by deadline (each node knows its heap slot), so retain_expire
 * frees them when due in O(log n) each, without walking the trie or
 * waiting for a subscriber to look them up. */
#include "node/mqtt/retain.h"

#include <string.h>

#include "common/alloc.h"
#include "node/mqtt/level_impl.h"

typedef struct rnode rnode;

/* Children of one node: a node/mqtt/level_impl.h child table of rnode pointers. */
typedef struct rkids {
    uint32_t n, cap; /* cap is a power of two */
    void *slot[];
} rkids;

struct rnode {
    rkids *kids;
    msg *m;        /* ref held; NULL on inner nodes */
    uint32_t heap; /* slot + 1 in retain.heap while m expires; 0 otherwise */
    uint16_t len;
    uint8_t level[];
};

struct retain {
    rnode *root;
    uint64_t seed;
    size_t count;
    size_t max;   /* 0 = no limit */
    rnode **heap; /* nodes whose message expires, earliest deadline first */
    uint32_t heap_n, heap_cap;
};

/* --- expiry deadlines: a min-heap of nodes by m->expiry_at --------------- */

static uint64_t due(const rnode *n)
{
    return n->m->expiry_at;
}

static void heap_place(retain *r, uint32_t i, rnode *n)
{
    r->heap[i] = n;
    n->heap = i + 1;
}

static void sift_up(retain *r, uint32_t i)
{
    rnode *n = r->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (due(r->heap[parent]) <= due(n)) {
            break;
        }
        heap_place(r, i, r->heap[parent]);
        i = parent;
    }
    heap_place(r, i, n);
}

static void sift_down(retain *r, uint32_t i)
{
    rnode *n = r->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= r->heap_n) {
            break;
        }
        if (child + 1 < r->heap_n && due(r->heap[child + 1]) < due(r->heap[child])) {
            child++;
        }
        if (due(n) <= due(r->heap[child])) {
            break;
        }
        heap_place(r, i, r->heap[child]);
        i = child;
    }
    heap_place(r, i, n);
}

static void heap_push(retain *r, rnode *n)
{
    if (r->heap_n == r->heap_cap) {
        uint32_t cap = r->heap_cap ? r->heap_cap * 2 : 16;
        r->heap = sh_realloc(r->heap, r->heap_cap * sizeof(rnode *), cap * sizeof(rnode *));
        r->heap_cap = cap;
    }
    r->heap[r->heap_n++] = n;
    sift_up(r, r->heap_n - 1);
}

static void heap_remove(retain *r, rnode *n)
{
    uint32_t i = n->heap - 1;
    n->heap = 0;
    rnode *last = r->heap[--r->heap_n];
    if (i == r->heap_n) {
        return;
    }
    heap_place(r, i, last);
    sift_up(r, i);
    sift_down(r, last->heap - 1);
}

/* n->m just changed (NULL included): keep its deadline in the heap. */
static void heap_update(retain *r, rnode *n)
{
    bool expires = n->m && n->m->expiry_at;
    if (n->heap && !expires) {
        heap_remove(r, n);
    } else if (n->heap) {
        uint32_t i = n->heap - 1;
        sift_up(r, i);
        sift_down(r, n->heap - 1);
    } else if (expires) {
        heap_push(r, n);
    }
}

/* --- nodes and their children ------------------------------------------- */

static level_key rnode_key(const void *c)
{
    const rnode *n = c;
    return (level_key){n->level, n->len};
}

static size_t rkids_size(uint32_t cap)
{
    return sizeof(rkids) + (size_t)cap * sizeof(rnode *);
}

static rnode *rnode_new(const uint8_t *l, size_t len)
{
    rnode *n = sh_malloc(offsetof(rnode, level) + len);
    n->kids = NULL;
    n->m = NULL;
    n->heap = 0;
    n->len = (uint16_t)len;
    if (len) {
        memcpy(n->level, l, len);
    }
    return n;
}

static void rnode_free(rnode *n)
{
    if (n->kids) {
        sh_free(n->kids, rkids_size(n->kids->cap));
    }
    sh_free(n, offsetof(rnode, level) + n->len);
}

static void **kids_slot(const retain *r, rkids *k, const uint8_t *l, size_t len)
{
    return level_slot(k->slot, k->cap, r->seed, rnode_key, l, len);
}

static rnode *kids_get(const retain *r, rkids *k, const uint8_t *l, size_t len)
{
    void **slot = k ? kids_slot(r, k, l, len) : NULL;
    return slot ? *slot : NULL;
}

static rkids *kids_resize(const retain *r, rkids *old, uint32_t cap)
{
    rkids *k = sh_calloc(1, rkids_size(cap));
    k->cap = cap;
    if (!old) {
        return k;
    }
    k->n = old->n;
    level_rehash(k->slot, cap, old->slot, old->cap, r->seed, rnode_key);
    sh_free(old, rkids_size(old->cap));
    return k;
}

static void kids_put(const retain *r, rnode *n, rnode *c)
{
    rkids *k = n->kids;
    if (!k) {
        k = n->kids = kids_resize(r, NULL, 1);
    } else if (level_tab_full(k->n, k->cap)) {
        k = n->kids = kids_resize(r, k, k->cap * 2);
    }
    *kids_slot(r, k, c->level, c->len) = c;
    k->n++;
}

/* Remove the child in slot, then drop an empty table or halve a sparse one. */
static void kids_erase(const retain *r, rnode *n, void **slot)
{
    rkids *k = n->kids;
    level_erase(k->slot, k->cap, (uint32_t)(slot - k->slot), r->seed, rnode_key);
    k->n--;
    if (k->n == 0) {
        sh_free(k, rkids_size(k->cap));
        n->kids = NULL;
    } else if (level_tab_sparse(k->n, k->cap)) {
        n->kids = kids_resize(r, k, k->cap / 2);
    }
}

/* --- set and delete ----------------------------------------------------- */

retain *retain_new(void)
{
    retain *r = sh_calloc(1, sizeof(*r));
    r->seed = level_seed(r);
    r->root = rnode_new(NULL, 0);
    return r;
}

void retain_set_max(retain *r, size_t max)
{
    r->max = max;
}

/* The node holding topic's message, or NULL. */
static rnode *find(const retain *r, mqtt_bytes topic)
{
    rnode *n = r->root;
    for (uint32_t pos = 0; n && pos <= topic.len;) {
        uint32_t end = level_end(topic, pos);
        n = kids_get(r, n->kids, topic.p + pos, end - pos);
        pos = end + 1;
    }
    return n && n->m ? n : NULL;
}

bool retain_has(const retain *r, mqtt_bytes topic)
{
    return find(r, level_nonnull(topic)) != NULL;
}

bool retain_has_room(const retain *r, mqtt_bytes topic)
{
    return r->max == 0 || r->count < r->max || find(r, level_nonnull(topic));
}

int retain_set(retain *r, msg *m)
{
    mqtt_bytes topic = level_nonnull((mqtt_bytes){m->topic, m->topic_len});
    /* MQTT §3.3.1.3: a retained message with an empty payload deletes. */
    if (m->payload_len == 0) {
        retain_delete(r, topic);
        return SH_OK;
    }
    if (!retain_has_room(r, topic)) {
        return SH_ERR; /* checked first: a refused topic leaves no branch */
    }
    rnode *n = r->root;
    for (uint32_t pos = 0; pos <= topic.len;) {
        uint32_t end = level_end(topic, pos);
        rnode *c = kids_get(r, n->kids, topic.p + pos, end - pos);
        if (!c) {
            c = rnode_new(topic.p + pos, end - pos);
            kids_put(r, n, c);
        }
        n = c;
        pos = end + 1;
    }
    msg *old = n->m;
    n->m = msg_ref(m);
    heap_update(r, n);
    if (old) {
        msg_unref(old);
    } else {
        r->count++;
    }
    return SH_OK;
}

/* Cut the branch below `cut` at level l: every node on it is empty and has
 * exactly one child, the next one on the deleted topic's path. */
static void prune(const retain *r, rnode *cut, const uint8_t *l, size_t len)
{
    void **slot = kids_slot(r, cut->kids, l, len);
    rnode *c = *slot;
    kids_erase(r, cut, slot);
    while (c) {
        rnode *next = c->kids ? level_first(c->kids->slot, c->kids->cap) : NULL;
        rnode_free(c);
        c = next;
    }
}

/* Remove the message under topic (only if it is `only`, when given) and
 * prune the branch it leaves empty. The message is released last: topic
 * may point into it. */
static bool unset(retain *r, mqtt_bytes topic, const msg *only)
{
    rnode *n = r->root, *cut = r->root;
    uint32_t cut_pos = 0, cut_end = level_end(topic, 0);
    for (uint32_t pos = 0; pos <= topic.len;) {
        uint32_t end = level_end(topic, pos);
        rnode *c = kids_get(r, n->kids, topic.p + pos, end - pos);
        if (!c) {
            return false;
        }
        /* The deepest node that keeps something else: pruning stops there. */
        if (n->m || n->kids->n > 1) {
            cut = n;
            cut_pos = pos;
            cut_end = end;
        }
        n = c;
        pos = end + 1;
    }
    msg *m = n->m;
    if (!m || (only && m != only)) {
        return false;
    }
    n->m = NULL;
    heap_update(r, n); /* before the prune frees n */
    r->count--;
    if (!n->kids) {
        prune(r, cut, topic.p + cut_pos, cut_end - cut_pos);
    }
    msg_unref(m);
    return true;
}

bool retain_delete(retain *r, mqtt_bytes topic)
{
    return unset(r, level_nonnull(topic), NULL);
}

/* --- matching ----------------------------------------------------------- */

/* Position of a frame that stands for "this node and all below it" ('#'). */
#define SUBTREE UINT32_MAX

typedef struct rframe {
    rnode *n;
    uint32_t pos; /* start of the next filter level; > filter.len when done */
} rframe;

/* A growable array on the heap once the inline room runs out: a '#' walk
 * or a deep topic must not recurse on a worker's stack. */
#define STACK_INLINE 32

typedef struct rwalk {
    retain *r;
    mqtt_bytes filter;
    uint64_t now_ms;
    retain_cb cb;
    void *arg;
    size_t found;
    rframe *st;
    size_t depth, room;
    msg **expired; /* dropped after the walk, so the walk never sees a freed node */
    size_t n_expired, expired_room;
    rframe small[STACK_INLINE];
} rwalk;

static void push(rwalk *w, rnode *n, uint32_t pos)
{
    if (w->depth == w->room) {
        size_t room = w->room * 2;
        if (w->st == w->small) {
            w->st = sh_malloc(room * sizeof(rframe));
            memcpy(w->st, w->small, sizeof(w->small));
        } else {
            w->st = sh_realloc(w->st, w->room * sizeof(rframe), room * sizeof(rframe));
        }
        w->room = room;
    }
    w->st[w->depth].n = n;
    w->st[w->depth].pos = pos;
    w->depth++;
}

/* MQTT §4.7.2: at the first level, '+' and '#' skip topics starting with '$'. */
static void push_children(rwalk *w, rnode *n, uint32_t pos, bool skip_dollar)
{
    const rkids *k = n->kids;
    for (uint32_t i = 0; k && i < k->cap; i++) {
        rnode *c = k->slot[i];
        if (c && !(skip_dollar && c->len && c->level[0] == '$')) {
            push(w, c, pos);
        }
    }
}

static void offer(rwalk *w, rnode *n)
{
    if (!n->m) {
        return;
    }
    if (!msg_is_expired(n->m, w->now_ms)) {
        w->cb(w->arg, n->m);
        w->found++;
        return;
    }
    if (w->n_expired == w->expired_room) {
        size_t room = w->expired_room ? w->expired_room * 2 : 8;
        w->expired = sh_realloc(w->expired, w->expired_room * sizeof(msg *), room * sizeof(msg *));
        w->expired_room = room;
    }
    w->expired[w->n_expired++] = n->m;
}

static void step(rwalk *w, rframe f)
{
    if (f.pos == SUBTREE) {
        offer(w, f.n);
        push_children(w, f.n, SUBTREE, false);
        return;
    }
    if (f.pos > w->filter.len) {
        offer(w, f.n);
        return;
    }
    uint32_t end = level_end(w->filter, f.pos);
    const uint8_t *l = w->filter.p + f.pos;
    bool first = f.pos == 0;
    if (level_is(l, end - f.pos, '#')) {
        /* "a/#" also matches "a" (§4.7.1.2); the root never holds one. */
        offer(w, f.n);
        push_children(w, f.n, SUBTREE, first);
    } else if (level_is(l, end - f.pos, '+')) {
        push_children(w, f.n, end + 1, first);
    } else {
        rnode *c = kids_get(w->r, f.n->kids, l, end - f.pos);
        if (c) {
            push(w, c, end + 1);
        }
    }
}

size_t retain_match(retain *r, mqtt_bytes filter, uint64_t now_ms, retain_cb cb, void *arg)
{
    rwalk w;
    memset(&w, 0, sizeof(w));
    w.r = r;
    w.filter = level_nonnull(filter);
    w.now_ms = now_ms;
    w.cb = cb;
    w.arg = arg;
    w.st = w.small;
    w.room = STACK_INLINE;
    push(&w, r->root, 0);
    while (w.depth) {
        w.depth--;
        step(&w, w.st[w.depth]);
    }
    if (w.st != w.small) {
        sh_free(w.st, w.room * sizeof(rframe));
    }
    for (size_t i = 0; i < w.n_expired; i++) {
        msg *m = w.expired[i];
        unset(r, (mqtt_bytes){m->topic, m->topic_len}, m);
    }
    sh_free(w.expired, w.expired_room * sizeof(msg *));
    return w.found;
}

/* --- lifecycle ---------------------------------------------------------- */

/* Iterative: a topic can have thousands of levels. */
void retain_free(retain *r)
{
    if (!r) {
        return;
    }
    level_stack st;
    level_stack_init(&st, r->root);
    for (rnode *n; (n = level_stack_pop(&st));) {
        if (n->kids) {
            level_stack_push_children(&st, n->kids->slot, n->kids->cap);
        }
        msg_unref(n->m);
        rnode_free(n);
    }
    level_stack_free(&st);
    sh_free(r->heap, r->heap_cap * sizeof(rnode *));
    sh_free(r, sizeof(*r));
}

size_t retain_count(const retain *r)
{
    return r->count;
}

size_t retain_expire(retain *r, uint64_t now_ms)
{
    size_t n = 0;
    while (r->heap_n && msg_is_expired(r->heap[0]->m, now_ms)) {
        msg *m = r->heap[0]->m;
        if (!unset(r, (mqtt_bytes){m->topic, m->topic_len}, m)) {
            heap_remove(r, r->heap[0]); /* cannot happen; never loop on it */
            continue;
        }
        n++;
    }
    return n;
}

uint64_t retain_next_expiry(const retain *r)
{
    return r->heap_n ? due(r->heap[0]) : 0;
}
