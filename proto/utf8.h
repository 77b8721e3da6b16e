/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 Encoded String rules of MQTT §1.5.4. */
#ifndef SHOAL_PROTO_UTF8_H
#define SHOAL_PROTO_UTF8_H

#include "proto/mqtt.h"

typedef enum mqtt_utf8 {
    MQTT_UTF8_OK = 0,
    /* Well formed but holds U+0001..U+001F or U+007F..U+009F, which the
     * spec lets a receiver refuse [MQTT-1.5.4-3]. Shoal refuses them in
     * topics, client ids and user names (they would reach logs and the
     * admin API) and accepts them in payload-like strings (properties). */
    MQTT_UTF8_CONTROL = 1,
    MQTT_UTF8_BAD = -1, /* ill-formed, overlong, surrogate, > U+10FFFF, or U+0000 */
} mqtt_utf8;

mqtt_utf8 mqtt_utf8_check(const uint8_t *s, size_t len);

/* True when the string may appear in an MQTT packet (OK or CONTROL). */
bool mqtt_utf8_valid(const uint8_t *s, size_t len);

#endif
