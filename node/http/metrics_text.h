/* SPDX-License-Identifier: Apache-2.0 */
/* The Prometheus text exposition format, version 0.0.4: pure functions that
 * append # HELP / # TYPE lines and samples to a growable buffer.
 * https://prometheus.io/docs/instrumenting/exposition_formats/
 *
 * Names are ours (never client input) and must match
 * [a-zA-Z_:][a-zA-Z0-9_:]*; label values may be anything (client ids,
 * reason names) and are escaped here. */
#ifndef SHOAL_NODE_METRICS_TEXT_H
#define SHOAL_NODE_METRICS_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The output. Starts zeroed ({0}); p is NUL-terminated once anything was
 * written. Memory comes from sh_realloc (aborts on failure). */
typedef struct metrics_text {
    char *p;
    size_t len;
    size_t cap;
} metrics_text;

typedef struct metrics_label {
    const char *name;
    const char *value;
} metrics_label;

void metrics_text_free(metrics_text *t);

/* True if s is a valid metric name (or label name when label is true:
 * no ':' allowed and no leading "__", which Prometheus reserves). */
bool metrics_text_valid_name(const char *s, bool label);

/* "# HELP name help" and "# TYPE name type"; type is "counter", "gauge",
 * "histogram", "summary" or "untyped". Help text is escaped (\\ and \n). */
void metrics_text_family(metrics_text *t, const char *name, const char *type, const char *help);

/* One sample: name{l1="v1",...} value. Label values are escaped (\\, \" and
 * \n). Counters go through the u64 form so large values stay exact (a
 * double holds 53 bits); doubles are written with %.15g, and NaN and ±Inf as
 * Prometheus spells them. */
void metrics_text_sample_u64(metrics_text *t, const char *name, const metrics_label *labels, size_t nlabels,
                             uint64_t v);
void metrics_text_sample(metrics_text *t, const char *name, const metrics_label *labels, size_t nlabels, double v);

/* A family with one unlabelled sample. */
void metrics_text_counter(metrics_text *t, const char *name, const char *help, uint64_t v);
void metrics_text_gauge(metrics_text *t, const char *name, const char *help, double v);

/* One histogram series (the family line is the caller's): name_bucket with
 * le="bound" for each of the n upper bounds (ascending) plus le="+Inf",
 * then name_sum and name_count. counts[i] is the number of observations in
 * bucket i alone (bound[i-1] < x <= bound[i]); counts[n] is the overflow
 * bucket. The writer makes them cumulative. */
void metrics_text_histogram(metrics_text *t, const char *name, const metrics_label *labels, size_t nlabels,
                            const double *bounds, const uint64_t *counts, size_t n, double sum);

#endif
