/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

static void quiet(void)
{
    cr_redirect_stderr();
}

TestSuite(log, .init = quiet);

static size_t count_lines(FILE *f, const char *needle)
{
    char line[2048];
    size_t n = 0;
    fflush(stderr);
    while (fgets(line, sizeof(line), f)) {
        n += strstr(line, needle) != NULL;
    }
    return n;
}

Test(log, repeated_events_from_one_site_are_rate_limited)
{
    sh_log_setup(SH_DEBUG, SH_LOG_TEXT, "t");
    time_t t0 = time(NULL);
    for (int i = 0; i < 2000; i++) {
        sh_log(SH_INFO, "event=flood i=%d", i);
    }
    time_t seconds = time(NULL) - t0 + 1;
    sh_log(SH_INFO, "event=other");
    FILE *f = cr_get_redirected_stderr();
    size_t flood = count_lines(f, "event=flood");
    /* One burst per calendar second the loop touched. */
    cr_assert(flood >= 200 && flood <= 200 * (size_t)seconds, "%zu flood lines in %lld s", flood, (long long)seconds);
}

Test(log, errors_are_never_suppressed_and_other_sites_unaffected)
{
    sh_log_setup(SH_DEBUG, SH_LOG_TEXT, "t");
    for (int i = 0; i < 100; i++) {
        sh_log(SH_ERROR, "event=fatal-thing i=%d", i);
    }
    sh_log(SH_INFO, "event=other-site");
    FILE *f = cr_get_redirected_stderr();
    char line[2048];
    size_t errors = 0, other = 0;
    fflush(stderr);
    while (fgets(line, sizeof(line), f)) {
        errors += strstr(line, "event=fatal-thing") != NULL;
        other += strstr(line, "event=other-site") != NULL;
    }
    cr_assert_eq(errors, 100);
    cr_assert_eq(other, 1);
}

Test(log, level_below_threshold_is_not_written)
{
    sh_log_setup(SH_WARN, SH_LOG_TEXT, "t");
    sh_log(SH_INFO, "event=hidden");
    sh_log(SH_WARN, "event=shown");
    cr_assert_eq(count_lines(cr_get_redirected_stderr(), "event="), 1);
}

Test(log, json_format_escapes_quotes)
{
    sh_log_setup(SH_DEBUG, SH_LOG_JSON, "n1");
    sh_log(SH_INFO, "event=x msg=\"%s\"", "a\"b");
    FILE *f = cr_get_redirected_stderr();
    char line[2048] = "";
    fflush(stderr);
    cr_assert_not_null(fgets(line, sizeof(line), f));
    cr_assert_not_null(strstr(line, "\"node\":\"n1\""), "%s", line);
    cr_assert_not_null(strstr(line, "msg=\\\"a\\\"b\\\""), "%s", line);
}

/* Read every line the redirected stderr holds. */
static size_t read_lines(char lines[][2048], size_t max)
{
    FILE *f = cr_get_redirected_stderr();
    size_t n = 0;
    fflush(stderr);
    while (n < max && fgets(lines[n], sizeof(lines[n]), f)) {
        n++;
    }
    return n;
}

/* Issue 15 item 15, as a new user tried it: a client id with a newline and
 * a whole forged line after it. In every format it stays one line, the
 * newline shows as \x0a, so the forged text never starts a line. */
static void forged_line_stays_one_line(sh_log_format fmt, const char *want)
{
    static const char id[] = "abc\n2026-12-07T00:00:00.000Z info  event=auth_ok client=admin";
    sh_log_setup(SH_DEBUG, fmt, "n1");
    sh_log(SH_INFO, "event=connect client=%s peer=1.2.3.4:5", id);
    static char lines[8][2048];
    size_t n = read_lines(lines, 8);
    cr_assert_eq(n, 1, "%zu lines: %s%s", n, lines[0], n > 1 ? lines[1] : "");
    cr_assert_not_null(strstr(lines[0], want), "%s", lines[0]);
    cr_assert_not_null(strstr(lines[0], "peer=1.2.3.4:5"), "%s", lines[0]);
}

Test(log, forged_line_text)
{
    forged_line_stays_one_line(SH_LOG_TEXT, "client=abc\\x0a2026-12-07T00:00:00.000Z info  event=auth_ok");
}

Test(log, forged_line_logfmt)
{
    forged_line_stays_one_line(SH_LOG_LOGFMT, "client=abc\\x0a2026-12-07T00:00:00.000Z info");
}

Test(log, forged_line_json)
{
    /* JSON escapes the escape's backslash: the decoded msg reads \x0a. */
    forged_line_stays_one_line(SH_LOG_JSON, "client=abc\\\\x0a2026-12-07T00:00:00.000Z info");
}

typedef struct esc_case {
    const char *in;
    const char *out;
} esc_case;

/* Every byte that is not printable text is written as \xNN: C0 controls,
 * DEL, the C1 controls U+0080..U+009F (NEL, CSI), ill-formed UTF-8, and the
 * Unicode line and paragraph separators; a backslash doubles so the log
 * reads back unambiguously. Printable UTF-8 passes through. */
static const esc_case esc_cases[] = {
    {"plain text=1 \"q\"", "plain text=1 \"q\""},
    {"a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"},
    {"bell\x07 esc\x1b[31m del\x7f", "bell\\x07 esc\\x1b[31m del\\x7f"},
    {"nel\xc2\x85 csi\xc2\x9b"
     "1m",
     "nel\\xc2\\x85 csi\\xc2\\x9b1m"},
    {"ls\xe2\x80\xa8 ps\xe2\x80\xa9", "ls\\xe2\\x80\\xa8 ps\\xe2\\x80\\xa9"},
    {"bad\xff\xc3(", "bad\\xff\\xc3("},
    {"overlong\xc0\xaf", "overlong\\xc0\\xaf"},
    {"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x90\x9f", "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x90\x9f"},
    {"nbsp\xc2\xa0", "nbsp\xc2\xa0"},
    {"back\\slash", "back\\\\slash"},
    {"cut\xe6\x97", "cut\\xe6\\x97"},
};

Test(log, escape_table)
{
    for (size_t i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
        char out[256];
        size_t n = sh_log_escape(out, sizeof(out), esc_cases[i].in, strlen(esc_cases[i].in));
        cr_assert_str_eq(out, esc_cases[i].out, "case %zu", i);
        cr_assert_eq(n, strlen(esc_cases[i].out), "case %zu", i);
    }
}

/* A full destination truncates at a whole escape, never half of one, and
 * always terminates. */
Test(log, escape_truncates_whole_escapes)
{
    char out[8];
    sh_log_escape(out, sizeof(out), "ab\n\n\n", 5);
    cr_assert_str_eq(out, "ab\\x0a");
    sh_log_escape(out, 1, "abc", 3);
    cr_assert_str_eq(out, "");
}

Test(log, every_format_escapes_every_control_byte)
{
    static const sh_log_format fmts[] = {SH_LOG_TEXT, SH_LOG_LOGFMT, SH_LOG_JSON};
    for (size_t k = 0; k < 3; k++) {
        sh_log_setup(SH_DEBUG, fmts[k], "n1");
        char all[64];
        size_t n = 0;
        for (int b = 1; b < 0x20; b++) {
            all[n++] = (char)b;
        }
        all[n++] = 0x7f;
        all[n] = '\0';
        sh_log(SH_INFO, "event=ctl k=%zu v=%s", k, all);
    }
    static char lines[8][2048];
    size_t n = read_lines(lines, 8);
    cr_assert_eq(n, 3, "%zu lines", n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(lines[i]);
        cr_assert_eq(lines[i][len - 1], '\n');
        for (size_t j = 0; j + 1 < len; j++) {
            unsigned char ch = (unsigned char)lines[i][j];
            cr_assert(ch >= 0x20 && ch != 0x7f, "line %zu byte %zu is 0x%02x: %s", i, j, ch, lines[i]);
        }
    }
}
