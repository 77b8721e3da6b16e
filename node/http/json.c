/* SPDX-License-Identifier: Apache-2.0 */
/* JSON writer and reader. */
#include "node/http/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"

/* --- writer ------------------------------------------------------------ */

void json_buf_free(json_buf *j)
{
    sh_free(j->p, j->cap);
    memset(j, 0, sizeof(*j));
}

char *json_take(json_buf *j, size_t *cap)
{
    if (!j->p) {
        j->p = sh_malloc(1);
        j->p[0] = '\0';
        j->cap = 1;
    }
    char *p = j->p;
    *cap = j->cap;
    memset(j, 0, sizeof(*j));
    return p;
}

static void put(json_buf *j, const char *s, size_t n)
{
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (cap < j->len + n + 1) {
            cap *= 2;
        }
        j->p = sh_realloc(j->p, j->cap, cap);
        j->cap = cap;
    }
    memcpy(j->p + j->len, s, n);
    j->len += n;
    j->p[j->len] = '\0';
}

/* Before a value: a comma if one was completed at this level. */
static void value_start(json_buf *j)
{
    if (j->comma) {
        put(j, ",", 1);
    }
    j->comma = false;
}

void json_obj(json_buf *j)
{
    value_start(j);
    put(j, "{", 1);
}

void json_obj_end(json_buf *j)
{
    put(j, "}", 1);
    j->comma = true;
}

void json_arr(json_buf *j)
{
    value_start(j);
    put(j, "[", 1);
}

void json_arr_end(json_buf *j)
{
    put(j, "]", 1);
    j->comma = true;
}

static void put_string(json_buf *j, const char *s, size_t n)
{
    put(j, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f) {
            continue;
        }
        put(j, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (ch) {
        case '"':
            put(j, "\\\"", 2);
            break;
        case '\\':
            put(j, "\\\\", 2);
            break;
        case '\n':
            put(j, "\\n", 2);
            break;
        case '\r':
            put(j, "\\r", 2);
            break;
        case '\t':
            put(j, "\\t", 2);
            break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            put(j, esc, 6);
        }
    }
    put(j, s + run, n - run);
    put(j, "\"", 1);
}

void json_key(json_buf *j, const char *key)
{
    value_start(j);
    put_string(j, key, strlen(key));
    put(j, ":", 1);
}

void json_strn(json_buf *j, const char *s, size_t n)
{
    value_start(j);
    put_string(j, s, n);
    j->comma = true;
}

void json_str(json_buf *j, const char *s)
{
    if (!s) {
        json_null(j);
        return;
    }
    json_strn(j, s, strlen(s));
}

void json_u64(json_buf *j, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    json_raw(j, tmp, (size_t)n);
}

void json_i64(json_buf *j, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    json_raw(j, tmp, (size_t)n);
}

void json_bool(json_buf *j, bool v)
{
    json_raw(j, v ? "true" : "false", v ? 4 : 5);
}

void json_null(json_buf *j)
{
    json_raw(j, "null", 4);
}

void json_raw(json_buf *j, const char *text, size_t n)
{
    value_start(j);
    put(j, text, n);
    j->comma = true;
}

/* --- reader ------------------------------------------------------------ */

/* The reader runs in `shoal ctl`, not in the broker, and its sizes are not
 * tracked, so it uses libc directly; failure still aborts in one place. */
static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    sh_assert(p != NULL);
    return p;
}

typedef struct reader {
    const char *p;
    const char *end;
    int depth;
} reader;

static void skip_ws(reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) {
        r->p++;
    }
}

static int hex4(const char *p, const char *end)
{
    if (end - p < 4) {
        return -1;
    }
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;
        } else {
            return -1;
        }
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *dst, unsigned cp)
{
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at r->p (on the opening quote). The decoded text is never longer
 * than the encoded one, so one allocation of the encoded size suffices. */
static char *read_string(reader *r)
{
    const char *start = ++r->p;
    const char *q = start;
    while (q < r->end && *q != '"') {
        q += *q == '\\' && q + 1 < r->end ? 2 : 1;
    }
    if (q >= r->end) {
        return NULL;
    }
    char *out = xrealloc(NULL, (size_t)(q - start) + 1);
    size_t n = 0;
    const char *p = start;
    while (p < q) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20) {
            goto bad;
        }
        if (ch != '\\') {
            out[n++] = (char)ch;
            p++;
            continue;
        }
        p++;
        char e = *p++;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            out[n++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u') {
            goto bad;
        }
        int cp = hex4(p, q);
        if (cp < 0) {
            goto bad;
        }
        p += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            int lo = q - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2, q) : -1;
            if (lo < 0xdc00 || lo > 0xdfff) {
                goto bad;
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            goto bad;
        }
        if (cp == 0) {
            goto bad; /* we hand out C strings */
        }
        n += put_utf8(out + n, (unsigned)cp);
    }
    out[n] = '\0';
    r->p = q + 1;
    return out;
bad:
    free(out);
    return NULL;
}

static bool read_value(reader *r, json_val *v);

static bool read_items(reader *r, json_val *v, bool object)
{
    size_t cap = 0;
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == (object ? '}' : ']')) {
        r->p++;
        return true;
    }
    for (;;) {
        if (v->n == cap) {
            cap = cap ? cap * 2 : 8;
            v->items = xrealloc(v->items, cap * sizeof(json_val));
            if (object) {
                v->keys = xrealloc(v->keys, cap * sizeof(char *));
            }
        }
        json_val *item = &v->items[v->n];
        memset(item, 0, sizeof(*item));
        skip_ws(r);
        if (object) {
            if (r->p >= r->end || *r->p != '"') {
                return false;
            }
            char *k = read_string(r);
            if (!k) {
                return false;
            }
            v->keys[v->n] = k;
            skip_ws(r);
            if (r->p >= r->end || *r->p != ':') {
                v->n++;
                return false;
            }
            r->p++;
        }
        v->n++;
        if (!read_value(r, item)) {
            return false;
        }
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == (object ? '}' : ']')) {
            r->p++;
            return true;
        }
        return false;
    }
}

static bool read_literal(reader *r, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) {
        return false;
    }
    r->p += n;
    return true;
}

static bool read_number(reader *r, json_val *v)
{
    const char *p = r->p;
    if (p < r->end && *p == '-') {
        p++;
    }
    const char *digits = p;
    while (p < r->end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-')) {
        p++;
    }
    if (p == digits || !(*digits >= '0' && *digits <= '9')) {
        return false;
    }
    char tmp[64];
    size_t n = (size_t)(p - r->p);
    if (n >= sizeof(tmp)) {
        return false;
    }
    memcpy(tmp, r->p, n);
    tmp[n] = '\0';
    char *endp;
    v->num = strtod(tmp, &endp);
    if (*endp) {
        return false;
    }
    v->type = JSON_NUM;
    r->p = p;
    return true;
}

static bool read_value(reader *r, json_val *v)
{
    skip_ws(r);
    if (r->p >= r->end) {
        return false;
    }
    switch (*r->p) {
    case '{':
    case '[':
        if (++r->depth > 64) {
            return false;
        }
        v->type = *r->p == '{' ? JSON_OBJ : JSON_ARR;
        if (!read_items(r, v, v->type == JSON_OBJ)) {
            return false;
        }
        r->depth--;
        return true;
    case '"':
        v->type = JSON_STR;
        v->str = read_string(r);
        return v->str != NULL;
    case 't':
        v->type = JSON_BOOL;
        v->b = true;
        return read_literal(r, "true");
    case 'f':
        v->type = JSON_BOOL;
        return read_literal(r, "false");
    case 'n':
        return read_literal(r, "null");
    default:
        return read_number(r, v);
    }
}

static void free_inner(json_val *v)
{
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        free_inner(&v->items[i]);
        if (v->keys) {
            free(v->keys[i]);
        }
    }
    free(v->items);
    free(v->keys);
}

json_val *json_parse(const char *text, size_t len)
{
    reader r = {text, text + len, 0};
    json_val *v = xrealloc(NULL, sizeof(*v));
    memset(v, 0, sizeof(*v));
    bool ok = read_value(&r, v);
    skip_ws(&r);
    if (!ok || r.p != r.end) {
        json_free(v);
        return NULL;
    }
    return v;
}

void json_free(json_val *v)
{
    if (v) {
        free_inner(v);
        free(v);
    }
}

const json_val *json_get(const json_val *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJ) {
        return NULL;
    }
    for (size_t i = 0; i < obj->n; i++) {
        if (!strcmp(obj->keys[i], key)) {
            return &obj->items[i];
        }
    }
    return NULL;
}
