/* SPDX-License-Identifier: Apache-2.0 */
/* The retained snapshot's Lua scripts (cluster/rk_retained.c,
 * cluster/rk_sweep.c), visible to the tests that run them against a real
 * Redis (tests/integration/retained_lua.c). docs/architecture.md,
 * "Retained messages: Kafka's order is the truth", has the keys:
 *   shoal:retained          topic -> record (live values only)
 *   shoal:retained:at       topic -> "partition:offset" the value reflects,
 *                           or "partition:offset:deleted_at_ms" (tombstone)
 *   shoal:retained:offsets  partition -> watermark: every retained record
 *                           of the partition before it is in the snapshot */
#ifndef SHOAL_CLUSTER_RK_RETAINED_H
#define SHOAL_CLUSTER_RK_RETAINED_H

#define RK_RETAINED_KEY "shoal:retained"
#define RK_RETAINED_AT_KEY "shoal:retained:at"
#define RK_RETAINED_OFFSETS_KEY "shoal:retained:offsets"

/* KEYS: retained, at. ARGV: topic, partition, offset, record ("" deletes).
 * Writes only when the stored position is older (same partition, smaller
 * offset), absent, or of another partition -> 1 written, 0 kept. */
extern const char RK_RETAINED_CAS_LUA[];
/* KEYS: offsets. ARGV: partition, watermark, ... Raises each, never lowers
 * -> how many were raised. */
extern const char RK_RETAINED_MARK_LUA[];
/* KEYS: retained, at. ARGV: cursor, count. One HSCAN batch of retained:
 * expired values are deleted and their position becomes a tombstone
 * -> {next cursor, deleted}. */
extern const char RK_SWEEP_EXPIRED_LUA[];
/* KEYS: at. ARGV: cursor, count, lifetime ms. One HSCAN batch of at:
 * tombstones older than the lifetime (Redis's clock) are deleted
 * -> {next cursor, deleted}. */
extern const char RK_SWEEP_TOMBSTONES_LUA[];

#endif
