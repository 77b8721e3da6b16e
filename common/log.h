/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: one event per line on stderr, key=value after the message.
 * The level is checked before formatting. */
#ifndef SHOAL_COMMON_LOG_H
#define SHOAL_COMMON_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum sh_level {
    SH_DEBUG = 0,
    SH_INFO = 1,
    SH_WARN = 2,
    SH_ERROR = 3,
} sh_level;

typedef enum sh_log_format {
    SH_LOG_TEXT = 0,
    SH_LOG_LOGFMT,
    SH_LOG_JSON,
} sh_log_format;

extern sh_level sh_log_level;

void sh_log_setup(sh_level level, sh_log_format format, const char *node_id);
/* Parses "debug", "info", "warn", "error"; -1 if unknown. */
int sh_log_parse_level(const char *s);

void sh_log_write(sh_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sh_log(level, ...)                      \
    do {                                        \
        if ((level) >= sh_log_level) {          \
            sh_log_write((level), __VA_ARGS__); \
        }                                       \
    } while (0)

/* Copies src[0..n) into dst (size dstlen, always terminated) with every
 * byte that is not printable text written as \xNN: C0 controls (so a
 * newline can never start a forged line), DEL, the C1 controls
 * U+0080..U+009F, U+2028/U+2029, and ill-formed UTF-8; a backslash is
 * doubled. Printable UTF-8 passes through. Stops at a whole escape when dst
 * is full. Returns the length written. Every log line goes through it. */
size_t sh_log_escape(char *dst, size_t dstlen, const char *src, size_t n);

/* Copies up to n bytes of untrusted data into dst (size dstlen) with
 * non-printables replaced by '.', for log samples. */
void sh_log_sample(char *dst, size_t dstlen, const void *data, size_t n);

#define sh_assert(cond)                                                                        \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            sh_log_write(SH_ERROR, "assertion failed: %s (%s:%d)", #cond, __FILE__, __LINE__); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#include <stdlib.h>

#endif
