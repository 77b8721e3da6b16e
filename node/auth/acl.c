/* SPDX-License-Identifier: Apache-2.0 */
/* The ACL file: mosquitto-like "user", "topic" and "pattern" lines.
 *
 *   topic [read|write|readwrite] FILTER    the current user's rule; before
 *                                          any "user" line: anonymous clients
 *   pattern [read|write|readwrite] FILTER  everyone, %u = username, %c =
 *                                          client id
 *   user NAME                              starts NAME's block
 *
 * Default deny: with an ACL loaded, only what a rule grants is allowed. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/auth/auth.h"
#include "proto/topic.h"

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) {
        s[--n] = '\0';
    }
    return s;
}

/* "read FILTER" → access and the filter; a filter alone means readwrite. */
static int parse_rule(char *rest, uint8_t *access, char **filter)
{
    char *sp = rest;
    while (*sp && !isspace((unsigned char)*sp)) {
        sp++;
    }
    size_t wlen = (size_t)(sp - rest);
    *access = ACL_READ | ACL_WRITE;
    if (wlen == 4 && !strncmp(rest, "read", 4)) {
        *access = ACL_READ;
    } else if (wlen == 5 && !strncmp(rest, "write", 5)) {
        *access = ACL_WRITE;
    } else if (wlen == 9 && !strncmp(rest, "readwrite", 9)) {
        *access = ACL_READ | ACL_WRITE;
    } else {
        sp = rest; /* no access word: the whole rest is the filter */
    }
    *filter = trim(sp);
    if (!**filter || !mqtt_topic_filter_valid((const uint8_t *)*filter, strlen(*filter))) {
        return SH_ERR;
    }
    return SH_OK;
}

static void add_rule(acl *a, size_t *cap, const acl_rule *r)
{
    if (a->n == *cap) {
        size_t old = *cap;
        *cap = *cap ? *cap * 2 : 16;
        a->v = sh_realloc(a->v, old * sizeof(acl_rule), *cap * sizeof(acl_rule));
    }
    a->v[a->n++] = *r;
}

acl *acl_parse(const char *text, char *err, size_t errlen)
{
    acl *a = sh_calloc(1, sizeof(*a));
    size_t cap = 0;
    char *copy = sh_strdup(text);
    char *cur_user = NULL;
    int lineno = 0;
    char *save = NULL;
    /* strtok_r would merge blank lines and lose line numbers: split by hand. */
    for (char *line = copy; line; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl) {
            *nl = '\0';
        }
        lineno++;
        char *p = trim(line);
        if (!*p || *p == '#') {
            continue;
        }
        char *sp = p;
        while (*sp && !isspace((unsigned char)*sp)) {
            sp++;
        }
        size_t klen = (size_t)(sp - p);
        char *rest = trim(sp);
        if (klen == 4 && !strncmp(p, "user", 4)) {
            if (!*rest) {
                snprintf(err, errlen, "line %d: user needs a name", lineno);
                goto fail;
            }
            sh_free_str(cur_user);
            cur_user = sh_strdup(rest);
            continue;
        }
        bool pattern = klen == 7 && !strncmp(p, "pattern", 7);
        if (!pattern && !(klen == 5 && !strncmp(p, "topic", 5))) {
            snprintf(err, errlen, "line %d: expected user, topic or pattern, not '%.*s'", lineno, (int)klen, p);
            goto fail;
        }
        acl_rule r = {.pattern = pattern};
        char *filter;
        if (parse_rule(rest, &r.access, &filter) != SH_OK) {
            snprintf(err, errlen, "line %d: missing or invalid topic filter", lineno);
            goto fail;
        }
        r.filter = sh_strdup(filter);
        r.user = !pattern && cur_user ? sh_strdup(cur_user) : NULL;
        add_rule(a, &cap, &r);
    }
    a->cap = cap;
    sh_free_str(cur_user);
    sh_free(copy, strlen(text) + 1);
    return a;
fail:
    a->cap = cap;
    sh_free_str(cur_user);
    sh_free(copy, strlen(text) + 1);
    acl_free(a);
    return NULL;
}

void acl_free(acl *a)
{
    if (!a) {
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        sh_free_str(a->v[i].user);
        sh_free_str(a->v[i].filter);
    }
    sh_free(a->v, a->cap * sizeof(acl_rule));
    sh_free(a, sizeof(*a));
}

/* A value substituted into a pattern must stay one plain level: a username
 * "+" or "a/b" would widen the rule (mosquitto refuses these too). */
static bool safe_level(const char *v)
{
    return v && *v && !strpbrk(v, "+#/");
}

/* The rule's filter for this client, in buf; NULL when it cannot apply. */
static const char *rule_filter(const acl_rule *r, const char *user, const char *client_id, char *buf, size_t cap)
{
    if (!r->pattern) {
        bool mine = r->user ? (user && !strcmp(r->user, user)) : user == NULL;
        return mine ? r->filter : NULL;
    }
    size_t o = 0;
    for (const char *f = r->filter; *f; f++) {
        const char *sub = NULL;
        if (f[0] == '%' && (f[1] == 'u' || f[1] == 'c')) {
            sub = f[1] == 'u' ? user : client_id;
            if (!safe_level(sub)) {
                return NULL;
            }
            f++;
        }
        size_t n = sub ? strlen(sub) : 1;
        if (o + n + 1 > cap) {
            return NULL;
        }
        memcpy(buf + o, sub ? sub : f, n);
        o += n;
    }
    buf[o] = '\0';
    return buf;
}

bool acl_check_topic(const acl *a, const char *user, const char *client_id, const uint8_t *topic, size_t len,
                     uint8_t access)
{
    char buf[1024];
    for (size_t i = 0; i < a->n; i++) {
        const acl_rule *r = &a->v[i];
        if (!(r->access & access)) {
            continue;
        }
        const char *f = rule_filter(r, user, client_id, buf, sizeof(buf));
        if (f && mqtt_topic_match((const uint8_t *)f, strlen(f), topic, len)) {
            return true;
        }
    }
    return false;
}

static size_t lvl_end(const uint8_t *s, size_t len, size_t i)
{
    while (i < len && s[i] != '/') {
        i++;
    }
    return i;
}

bool acl_filter_covers(const char *rs, size_t rlen, const uint8_t *s, size_t slen)
{
    const uint8_t *r = (const uint8_t *)rs;
    size_t ri = 0, si = 0;
    for (bool first = true;; first = false) {
        size_t re = lvl_end(r, rlen, ri), se = lvl_end(s, slen, si);
        bool r_hash = re - ri == 1 && r[ri] == '#';
        bool r_plus = re - ri == 1 && r[ri] == '+';
        bool s_hash = se - si == 1 && s[si] == '#';
        if (first && (r_hash || r_plus) && se > si && s[si] == '$') {
            return false; /* §4.7.2: the rule would not match '$' topics */
        }
        if (r_hash) {
            return true;
        }
        if (s_hash) {
            return false; /* only '#' covers '#' */
        }
        bool same = re - ri == se - si && memcmp(r + ri, s + si, re - ri) == 0;
        if (!same && !r_plus) {
            return false;
        }
        bool r_done = re == rlen, s_done = se == slen;
        if (r_done || s_done) {
            /* "a/#" also covers the parent "a". */
            return (r_done && s_done) || (s_done && rlen - re == 2 && r[re] == '/' && r[re + 1] == '#');
        }
        ri = re + 1;
        si = se + 1;
    }
}

bool acl_check_subscribe(const acl *a, const char *user, const char *client_id, const uint8_t *filter, size_t len)
{
    char buf[1024];
    for (size_t i = 0; i < a->n; i++) {
        const acl_rule *r = &a->v[i];
        if (!(r->access & ACL_READ)) {
            continue;
        }
        const char *f = rule_filter(r, user, client_id, buf, sizeof(buf));
        if (f && acl_filter_covers(f, strlen(f), filter, len)) {
            return true;
        }
    }
    return false;
}
