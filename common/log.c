/* SPDX-License-Identifier: Apache-2.0 */
#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

sh_level sh_log_level = SH_INFO;
static sh_log_format log_format = SH_LOG_TEXT;
static char log_node[64] = "-";

static const char *level_names[] = {"debug", "info", "warn", "error"};

void sh_log_setup(sh_level level, sh_log_format format, const char *node_id)
{
    sh_log_level = level;
    log_format = format;
    if (node_id) {
        snprintf(log_node, sizeof(log_node), "%s", node_id);
    }
}

int sh_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            return i;
        }
    }
    if (strcmp(s, "warning") == 0) {
        return SH_WARN;
    }
    return -1;
}

/* JSON string body of a line already through sh_log_escape: only '"' and
 * '\\' are left to escape (no control bytes, no ill-formed UTF-8). */
static void json_escape(char *dst, size_t dstlen, const char *src)
{
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 3 < dstlen; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch == '"' || ch == '\\') {
            dst[j++] = '\\';
        }
        dst[j++] = (char)ch;
    }
    dst[j] = '\0';
}

/* Length of the printable UTF-8 sequence at s[0..n), or 0 when the bytes
 * there must be escaped: ill-formed (Unicode table 3-7: no overlongs, no
 * surrogates, nothing past U+10FFFF), a C1 control U+0080..U+009F, or the
 * line/paragraph separators U+2028/U+2029 that some viewers break on. */
static size_t printable_utf8(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    bool c1 = c == 0xC2 && s[1] <= 0x9F;
    bool separator = c == 0xE2 && s[1] == 0x80 && (s[2] == 0xA8 || s[2] == 0xA9);
    return c1 || separator ? 0 : len;
}

size_t sh_log_escape(char *dst, size_t dstlen, const char *src, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)src;
    size_t j = 0;
    if (dstlen == 0) {
        return 0;
    }
    for (size_t i = 0; i < n;) {
        unsigned char ch = s[i];
        size_t run = ch >= 0x20 && ch < 0x7F && ch != '\\' ? 1 : ch >= 0x80 ? printable_utf8(s + i, n - i) : 0;
        if (run > 0) {
            if (j + run >= dstlen) {
                break;
            }
            memcpy(dst + j, s + i, run);
            j += run;
            i += run;
            continue;
        }
        /* Escape one byte; a sequence that is not printable goes out byte
         * by byte, each as \xNN. */
        if (j + (ch == '\\' ? 2 : 4) >= dstlen) {
            break;
        }
        dst[j++] = '\\';
        if (ch == '\\') {
            dst[j++] = '\\';
        } else {
            dst[j++] = 'x';
            dst[j++] = hex[ch >> 4];
            dst[j++] = hex[ch & 0x0F];
        }
        i++;
    }
    dst[j] = '\0';
    return j;
}

/* Rate limit per call site (its format string): a flood of bad clients
 * must not turn the log into the bottleneck. Each site may write
 * LOG_BURST lines per second; the next line after a quiet spell says how
 * many were suppressed. */
#define LOG_BURST 200
#define LOG_SITES 256

typedef struct log_site {
    const char *fmt;
    time_t second;
    unsigned lines;      /* written in `second` */
    unsigned prev_lines; /* written in second - 1 */
    unsigned suppressed;
} log_site;

static log_site sites[LOG_SITES];
static pthread_mutex_t sites_lock = PTHREAD_MUTEX_INITIALIZER;

/* Returns false to drop the line; *suppressed gets the count to report.
 * A thread may read the clock just before another moves the window on:
 * its line counts against the second it is stamped with, never resets the
 * window backwards. */
static bool site_allows(const char *fmt, time_t now, unsigned *suppressed)
{
    size_t h = ((uintptr_t)fmt >> 4) % LOG_SITES;
    bool ok = true;
    *suppressed = 0;
    pthread_mutex_lock(&sites_lock);
    log_site *s = &sites[h];
    if (s->fmt != fmt || now > s->second) {
        if (s->fmt == fmt) {
            *suppressed = s->suppressed;
            s->prev_lines = now == s->second + 1 ? s->lines : 0;
        } else {
            s->prev_lines = 0;
        }
        s->fmt = fmt;
        s->second = now;
        s->lines = 0;
        s->suppressed = 0;
    }
    unsigned *lines = now == s->second ? &s->lines : now == s->second - 1 ? &s->prev_lines : NULL;
    if (lines && ++*lines > LOG_BURST) {
        s->suppressed++;
        ok = false;
    }
    pthread_mutex_unlock(&sites_lock);
    return ok;
}

void sh_log_write(sh_level level, const char *fmt, ...)
{
    unsigned suppressed = 0;
    /* One clock reading for the limiter and the timestamp, so a site never
     * shows more than LOG_BURST lines stamped with the same second. */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (level < SH_ERROR && !site_allows(fmt, tv.tv_sec, &suppressed)) {
        return;
    }
    char raw[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    if (suppressed && (size_t)n < sizeof(raw)) {
        snprintf(raw + n, sizeof(raw) - (size_t)n, " suppressed_before=%u", suppressed);
    }
    /* Call sites format client ids, user names, topics and peers' words
     * with %s: escape the whole line once here, so no value in any format
     * can end the line or reach a terminal as a control sequence. */
    char msg[4 * sizeof(raw)];
    sh_log_escape(msg, sizeof(msg), raw, strnlen(raw, sizeof(raw)));

    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t tn = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tn, sizeof(ts) - tn, ".%03ldZ", (long)(tv.tv_usec / 1000));

    const char *lvl = level_names[level < 4 ? level : 3];
    /* One fprintf per line so lines from several threads never interleave. */
    if (log_format == SH_LOG_JSON) {
        char esc[2 * sizeof(msg)];
        json_escape(esc, sizeof(esc), msg);
        fprintf(stderr, "{\"time\":\"%s\",\"level\":\"%s\",\"node\":\"%s\",\"msg\":\"%s\"}\n", ts, lvl, log_node, esc);
    } else if (log_format == SH_LOG_LOGFMT) {
        fprintf(stderr, "time=%s level=%s node=%s %s\n", ts, lvl, log_node, msg);
    } else {
        fprintf(stderr, "%s %-5s %s\n", ts, lvl, msg);
    }
}

void sh_log_sample(char *dst, size_t dstlen, const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t i = 0;
    for (; i < n && i + 1 < dstlen; i++) {
        dst[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '.';
    }
    if (dstlen) {
        dst[i] = '\0';
    }
}
