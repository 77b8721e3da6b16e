/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus text exposition format 0.0.4. */
#include "node/http/metrics_text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"

void metrics_text_free(metrics_text *t)
{
    sh_free(t->p, t->cap);
    t->p = NULL;
    t->len = t->cap = 0;
}

static void reserve(metrics_text *t, size_t more)
{
    if (t->len + more + 1 <= t->cap) {
        return;
    }
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->len + more + 1) {
        cap *= 2;
    }
    t->p = sh_realloc(t->p, t->cap, cap);
    t->cap = cap;
}

static void put(metrics_text *t, const char *s, size_t n)
{
    reserve(t, n);
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void puts_(metrics_text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void putf(metrics_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(metrics_text *t, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sh_assert(n >= 0 && (size_t)n < sizeof(tmp));
    put(t, tmp, (size_t)n);
}

/* Escape \ and newline, plus " when quoted (label values). */
static void put_escaped(metrics_text *t, const char *s, bool quoted)
{
    for (; *s; s++) {
        if (*s == '\\') {
            put(t, "\\\\", 2);
        } else if (*s == '\n') {
            put(t, "\\n", 2);
        } else if (quoted && *s == '"') {
            put(t, "\\\"", 2);
        } else {
            put(t, s, 1);
        }
    }
}

bool metrics_text_valid_name(const char *s, bool label)
{
    if (!s || !*s || (label && s[0] == '_' && s[1] == '_')) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || (!label && ch == ':') ||
                  (p != s && ch >= '0' && ch <= '9');
        if (!ok) {
            return false;
        }
    }
    return true;
}

void metrics_text_family(metrics_text *t, const char *name, const char *type, const char *help)
{
    sh_assert(metrics_text_valid_name(name, false));
    puts_(t, "# HELP ");
    puts_(t, name);
    put(t, " ", 1);
    put_escaped(t, help, false);
    puts_(t, "\n# TYPE ");
    puts_(t, name);
    put(t, " ", 1);
    puts_(t, type);
    put(t, "\n", 1);
}

/* name{labels[,le="extra"]} */
static void put_series(metrics_text *t, const char *name, const char *suffix, const metrics_label *labels, size_t n,
                       const char *le)
{
    sh_assert(metrics_text_valid_name(name, false));
    puts_(t, name);
    puts_(t, suffix);
    if (n == 0 && !le) {
        return;
    }
    put(t, "{", 1);
    for (size_t i = 0; i < n; i++) {
        sh_assert(metrics_text_valid_name(labels[i].name, true));
        if (i) {
            put(t, ",", 1);
        }
        puts_(t, labels[i].name);
        put(t, "=\"", 2);
        put_escaped(t, labels[i].value ? labels[i].value : "", true);
        put(t, "\"", 1);
    }
    if (le) {
        puts_(t, n ? ",le=\"" : "le=\"");
        puts_(t, le);
        put(t, "\"", 1);
    }
    put(t, "}", 1);
}

static void put_double(metrics_text *t, double v)
{
    if (isnan(v)) {
        puts_(t, "NaN");
    } else if (isinf(v)) {
        puts_(t, v > 0 ? "+Inf" : "-Inf");
    } else {
        putf(t, "%.15g", v);
    }
}

void metrics_text_sample_u64(metrics_text *t, const char *name, const metrics_label *labels, size_t nlabels, uint64_t v)
{
    put_series(t, name, "", labels, nlabels, NULL);
    putf(t, " %llu\n", (unsigned long long)v);
}

void metrics_text_sample(metrics_text *t, const char *name, const metrics_label *labels, size_t nlabels, double v)
{
    put_series(t, name, "", labels, nlabels, NULL);
    put(t, " ", 1);
    put_double(t, v);
    put(t, "\n", 1);
}

void metrics_text_counter(metrics_text *t, const char *name, const char *help, uint64_t v)
{
    metrics_text_family(t, name, "counter", help);
    metrics_text_sample_u64(t, name, NULL, 0, v);
}

void metrics_text_gauge(metrics_text *t, const char *name, const char *help, double v)
{
    metrics_text_family(t, name, "gauge", help);
    metrics_text_sample(t, name, NULL, 0, v);
}

void metrics_text_histogram(metrics_text *t, const char *name, const metrics_label *labels, size_t nlabels,
                            const double *bounds, const uint64_t *counts, size_t n, double sum)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= n; i++) {
        char le[40];
        if (i < n) {
            sh_assert(i == 0 || bounds[i] > bounds[i - 1]);
            snprintf(le, sizeof(le), "%.15g", bounds[i]);
        } else {
            snprintf(le, sizeof(le), "+Inf");
        }
        cum += counts[i];
        put_series(t, name, "_bucket", labels, nlabels, le);
        putf(t, " %llu\n", (unsigned long long)cum);
    }
    put_series(t, name, "_sum", labels, nlabels, NULL);
    put(t, " ", 1);
    put_double(t, sum);
    put(t, "\n", 1);
    put_series(t, name, "_count", labels, nlabels, NULL);
    putf(t, " %llu\n", (unsigned long long)cum);
}
