/* SPDX-License-Identifier: Apache-2.0 */
/* Topic names, topic filters, shared subscriptions and matching (§4.7,
 * §4.8.2). Inputs are arbitrary bytes: nothing here trusts that the caller
 * validated them, so every loop is bounded by the given length. */
#include <string.h>

#include "proto/topic.h"
#include "proto/utf8.h"

/* §4.7.3: at least one byte; a UTF-8 Encoded String holds at most 65535. */
static bool length_ok(size_t len)
{
    return len >= 1 && len <= 65535;
}

bool mqtt_topic_filter_has_wildcard(const uint8_t *s, size_t len)
{
    return len > 0 && (memchr(s, '+', len) != NULL || memchr(s, '#', len) != NULL);
}

/* Valid UTF-8 without control characters: [MQTT-1.5.4-3] lets Shoal refuse
 * U+0001..U+001F and U+007F..U+009F, and it does in every topic, so no
 * topic can forge a log line or reach the admin API with one. */
static bool printable(const uint8_t *s, size_t len)
{
    return mqtt_utf8_check(s, len) == MQTT_UTF8_OK;
}

/* §4.7.1: wildcards belong in filters only [MQTT-3.3.2-2]. */
bool mqtt_topic_name_valid(const uint8_t *s, size_t len)
{
    return length_ok(len) && !mqtt_topic_filter_has_wildcard(s, len) && printable(s, len);
}

/* §4.7.1.2 / §4.7.1.3: '+' fills a whole level; '#' fills a whole level and
 * must be the last character. */
bool mqtt_topic_filter_valid(const uint8_t *s, size_t len)
{
    if (!length_ok(len) || !printable(s, len)) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '+' && s[i] != '#') {
            continue;
        }
        bool starts_level = i == 0 || s[i - 1] == '/';
        bool ends_level = i + 1 == len || s[i + 1] == '/';
        if (!starts_level || !ends_level) {
            return false;
        }
        if (s[i] == '#' && i + 1 != len) {
            return false;
        }
    }
    return true;
}

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7

/* §4.8.2: "$share/" ShareName "/" filter, where ShareName is at least one
 * character and holds no '/', '+' or '#' [MQTT-4.8.2-1, -2]. */
int mqtt_share_parse(const uint8_t *s, size_t len, mqtt_bytes *group, mqtt_bytes *filter)
{
    if (len < SHARE_PREFIX_LEN || memcmp(s, SHARE_PREFIX, SHARE_PREFIX_LEN) != 0) {
        return 0;
    }
    const uint8_t *g = s + SHARE_PREFIX_LEN;
    size_t rest = len - SHARE_PREFIX_LEN;
    const uint8_t *slash = rest > 0 ? memchr(g, '/', rest) : NULL;
    if (slash == NULL || slash == g) {
        return -1;
    }
    size_t glen = (size_t)(slash - g);
    if (mqtt_topic_filter_has_wildcard(g, glen) || !printable(g, glen)) {
        return -1;
    }
    const uint8_t *fl = slash + 1;
    size_t flen = rest - glen - 1;
    if (!mqtt_topic_filter_valid(fl, flen)) {
        return -1;
    }
    group->p = g;
    group->len = (uint32_t)glen;
    filter->p = fl;
    filter->len = (uint32_t)flen;
    return 1;
}

/* End of the level starting at i: the next '/' or len. */
static size_t level_end(const uint8_t *s, size_t len, size_t i)
{
    const uint8_t *slash = i < len ? memchr(s + i, '/', len - i) : NULL;
    return slash != NULL ? (size_t)(slash - s) : len;
}

static bool level_is(const uint8_t *s, size_t a, size_t b, char c)
{
    return b - a == 1 && s[a] == (uint8_t)c;
}

bool mqtt_topic_match(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen)
{
    /* §4.7.2 [MQTT-4.7.2-1]: wildcards at the first level never match
     * topics starting with '$' ($SYS/..., $share is never a topic). */
    if (tlen > 0 && t[0] == '$' && flen > 0 && (f[0] == '+' || f[0] == '#')) {
        return false;
    }
    size_t fi = 0, ti = 0;
    for (;;) {
        size_t fe = level_end(f, flen, fi);
        if (level_is(f, fi, fe, '#')) {
            return true;
        }
        size_t te = level_end(t, tlen, ti);
        bool same = fe - fi == te - ti && (fe == fi || memcmp(f + fi, t + ti, fe - fi) == 0);
        if (!same && !level_is(f, fi, fe, '+')) {
            return false;
        }
        bool f_done = fe == flen, t_done = te == tlen;
        if (f_done || t_done) {
            /* §4.7.1.2: "sport/#" also matches the parent "sport". */
            return (f_done && t_done) || (t_done && flen - fe == 2 && f[fe] == '/' && f[fe + 1] == '#');
        }
        fi = fe + 1;
        ti = te + 1;
    }
}
