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
    cr_assert(flood >= 200 && flood <= 200 * (size_t)seconds, "%zu flood lines in %lld s", flood,
              (long long)seconds);
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
