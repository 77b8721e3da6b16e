/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"

static void quiet(void)
{
    cr_redirect_stderr();
    cr_redirect_stdout();
    unsetenv("SHOAL_PORT");
    unsetenv("SHOAL_MAX_QOS");
}

TestSuite(config, .init = quiet);

static config_status load(config *c, int argc, const char **argv)
{
    return config_load(c, argc, (char **)argv);
}

Test(config, defaults)
{
    config c;
    cr_assert_eq(load(&c, 0, NULL), 0);
    cr_assert_eq(c.port, 1883);
    cr_assert_eq(c.max_qos, 2);
    cr_assert(c.retain_available);
    cr_assert_str_eq(c.shared_strategy, "round-robin");
    cr_assert_eq(c.max_packet_size, 268435455u);
    config_free(&c);
}

Test(config, flags_in_both_forms)
{
    config c;
    const char *argv[] = {"--port", "1999", "--max-qos=1", "--retain-available", "false", "--wildcard-subscriptions"};
    cr_assert_eq(load(&c, 6, argv), 0);
    cr_assert_eq(c.port, 1999);
    cr_assert_eq(c.max_qos, 1);
    cr_assert_not(c.retain_available);
    cr_assert(c.wildcard_subscriptions);
    config_free(&c);
}

Test(config, invalid_values_are_exit_code_2)
{
    config c;
    const char *a1[] = {"--port", "abc"};
    cr_assert_eq(load(&c, 2, a1), CONFIG_INVALID);
    const char *a2[] = {"--max-qos", "7"};
    cr_assert_eq(load(&c, 2, a2), CONFIG_INVALID);
    const char *a3[] = {"--no-such-flag"};
    cr_assert_eq(load(&c, 1, a3), CONFIG_INVALID);
    const char *a4[] = {"--retain-available=maybe"};
    cr_assert_eq(load(&c, 1, a4), CONFIG_INVALID);
    const char *a5[] = {"--shared-strategy", "fastest"};
    cr_assert_eq(load(&c, 2, a5), CONFIG_INVALID);
    const char *a6[] = {"--port"};
    cr_assert_eq(load(&c, 1, a6), CONFIG_INVALID);
}

Test(config, help_returns_1)
{
    config c;
    const char *argv[] = {"--help"};
    cr_assert_eq(load(&c, 1, argv), CONFIG_EXIT);
}

Test(config, env_then_flag_precedence)
{
    config c;
    setenv("SHOAL_PORT", "2001", 1);
    setenv("SHOAL_MAX_QOS", "1", 1);
    const char *argv[] = {"--port", "2002"};
    cr_assert_eq(load(&c, 2, argv), 0);
    cr_assert_eq(c.port, 2002, "flag beats env");
    cr_assert_eq(c.max_qos, 1, "env applies");
    config_free(&c);
}

Test(config, file_keys_and_precedence)
{
    char path[] = "/tmp/shoal-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# comment\nport 3001\nmax-inflight = 7\n\nshared-strategy sticky\nmax-qos 0\n");
    fclose(f);
    setenv("SHOAL_MAX_QOS", "1", 1);
    config c;
    const char *argv[] = {"--config", path, "--port", "3002"};
    cr_assert_eq(load(&c, 4, argv), 0);
    cr_assert_eq(c.port, 3002, "flag beats file");
    cr_assert_eq(c.max_inflight, 7);
    cr_assert_str_eq(c.shared_strategy, "sticky");
    cr_assert_eq(c.max_qos, 1, "env beats file");
    config_free(&c);
    unlink(path);
}

Test(config, file_with_unknown_key_is_an_error)
{
    char path[] = "/tmp/shoal-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "prot 3001\n");
    fclose(f);
    config c;
    const char *argv[] = {"--config", path};
    cr_assert_eq(load(&c, 2, argv), CONFIG_INVALID);
    unlink(path);
}
