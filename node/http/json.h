/* SPDX-License-Identifier: Apache-2.0 */
/* A small JSON writer (the HTTP API's bodies) and reader (`shoal ctl`
 * reading them back). Strings are UTF-8; the writer escapes what RFC 8259
 * requires, the reader decodes \uXXXX (surrogate pairs included). */
#ifndef SHOAL_NODE_JSON_H
#define SHOAL_NODE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- writer ------------------------------------------------------------ */

/* Starts zeroed ({0}). Commas are placed automatically: call json_key
 * before each member of an object. Memory from sh_realloc. */
typedef struct json_buf {
    char *p;
    size_t len;
    size_t cap;
    bool comma; /* a value was just completed at this level */
} json_buf;

void json_buf_free(json_buf *j);
/* Take the text (NUL-terminated, never NULL) and its allocation size;
 * the buffer is empty afterwards. Free with sh_free(p, *cap). */
char *json_take(json_buf *j, size_t *cap);

void json_obj(json_buf *j);
void json_obj_end(json_buf *j);
void json_arr(json_buf *j);
void json_arr_end(json_buf *j);
void json_key(json_buf *j, const char *key);
void json_str(json_buf *j, const char *s);
void json_strn(json_buf *j, const char *s, size_t n);
void json_u64(json_buf *j, uint64_t v);
void json_i64(json_buf *j, int64_t v);
void json_bool(json_buf *j, bool v);
void json_null(json_buf *j);
/* An already-encoded JSON value (e.g. an object built elsewhere). */
void json_raw(json_buf *j, const char *text, size_t n);

/* --- reader ------------------------------------------------------------ */

typedef enum json_type {
    JSON_NULL = 0,
    JSON_BOOL,
    JSON_NUM,
    JSON_STR,
    JSON_ARR,
    JSON_OBJ,
} json_type;

typedef struct json_val json_val;
struct json_val {
    json_type type;
    bool b;
    double num;
    char *str;       /* JSON_STR, NUL-terminated (may contain no NUL) */
    size_t n;        /* items in an array or object */
    json_val *items; /* array items, or object values */
    char **keys;     /* object keys, parallel to items */
};

/* Parse one complete document (trailing whitespace only). Returns NULL on
 * any error, including nesting deeper than 64. Free with json_free. */
json_val *json_parse(const char *text, size_t len);
void json_free(json_val *v);
/* Member of an object, or NULL. */
const json_val *json_get(const json_val *obj, const char *key);

#endif
