/* SPDX-License-Identifier: Apache-2.0 */
/* Topic names, topic filters and matching (§4.7, §4.8.2). */
#ifndef SHOAL_PROTO_TOPIC_H
#define SHOAL_PROTO_TOPIC_H

#include "proto/mqtt.h"

/* A topic name for PUBLISH: 1..65535 bytes, valid UTF-8 without control
 * characters (U+0001..U+001F, U+007F..U+009F), no '+' or '#'. */
bool mqtt_topic_name_valid(const uint8_t *s, size_t len);

/* A topic filter: 1..65535 bytes, valid UTF-8 without control characters,
 * '+' occupies a whole level,
 * '#' occupies a whole level and is last. Empty levels are allowed. */
bool mqtt_topic_filter_valid(const uint8_t *s, size_t len);

/* True if the filter contains '+' or '#'. */
bool mqtt_topic_filter_has_wildcard(const uint8_t *s, size_t len);

/* `$share/<group>/<filter>` (§4.8.2). Returns:
 *   0 when `s` is not a shared subscription (group/filter untouched),
 *   1 when it is valid: group and filter are slices of s,
 *  -1 when it starts with "$share/" but is malformed (empty group, group
 *     with '+' or '#', or no filter / invalid filter). */
int mqtt_share_parse(const uint8_t *s, size_t len, mqtt_bytes *group, mqtt_bytes *filter);

/* Does topic name `t` match filter `f`? Implements the '$' rule (§4.7.2):
 * a filter starting with '+' or '#' does not match a topic starting with '$'. */
bool mqtt_topic_match(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen);

#endif
