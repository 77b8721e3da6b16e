#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end smoke test of the backbone: start Redis and a one-node Kafka on
# free ports with deploy/*/start, run the backbone_smoke binary against them,
# stop both with deploy/*/stop (also on failure), then check that every PID
# they recorded is gone and every port is closed.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: tests/integration/backbone_smoke.sh PATH/TO/backbone_smoke

Starts Redis + 1-node Kafka on free loopback ports, runs the binary, stops
both and verifies nothing is left running. Exit 0 only if all of that passed.
Work dir (configs, logs) is removed on success and kept on failure.
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  '') usage >&2; exit 2 ;;
esac
bin=$1
[ -x "$bin" ] || { echo "backbone_smoke.sh: error: $bin is not an executable" >&2; exit 2; }
bin="$(cd "$(dirname "$bin")" && pwd -P)/$(basename "$bin")"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
# shellcheck source-path=SCRIPTDIR source=../../deploy/lib/common.sh
. "$root/deploy/lib/common.sh"
LOG_TAG=backbone_smoke.sh

# free_port: a random port in 20000..31999 (below the kernel's ephemeral
# range, so outgoing connections do not take it) that nothing listens on and
# that this run has not picked yet.
picked=" "
free_port() {
  local p tries=0
  while [ $tries -lt 200 ]; do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    tries=$((tries + 1))
    case "$picked" in *" $p "*) continue ;; esac
    port_in_use "$p" && continue
    picked+="$p "
    echo "$p"
    return 0
  done
  die "no free port found"
}

redis_port=$(free_port)
kafka_port=$(free_port)
kafka_cport=$(free_port)

work=$(mktemp -d "${TMPDIR:-/tmp}/shoal-backbone-smoke.XXXXXX")
kdir="$work/kafka" rdir="$work/redis"
failed=0
stopped=0

# stop_and_verify: stop what the start scripts recorded, then check every
# recorded PID is gone and every port closed. Safe to call twice.
stop_and_verify() {
  [ "$stopped" = 1 ] && return 0
  stopped=1
  local items=() pf pid name p
  shopt -s nullglob
  for pf in "$kdir"/broker-*.pid; do
    name=$(basename "$pf" .pid)
    items+=("$(cat "$pf"):$kdir/$name/server.properties")
  done
  [ -f "$rdir/redis.pid" ] && items+=("$(cat "$rdir/redis.pid"):$rdir/redis.conf")
  shopt -u nullglob

  if [ -d "$kdir" ]; then
    "$root/deploy/kafka/stop" --dir "$kdir" || { log "FAIL: deploy/kafka/stop failed"; failed=1; }
  fi
  if [ -d "$rdir" ]; then
    "$root/deploy/redis/stop" --dir "$rdir" || { log "FAIL: deploy/redis/stop failed"; failed=1; }
  fi

  for item in ${items[@]+"${items[@]}"}; do
    pid=${item%%:*}
    if proc_ours "$pid" "${item#*:}"; then
      log "FAIL: pid $pid still running after stop"
      failed=1
    fi
  done
  for p in "$redis_port" "$kafka_port" "$kafka_cport"; do
    if port_in_use "$p" || port_open "$p"; then
      log "FAIL: port $p still open after stop"
      failed=1
    fi
  done
  if [ "$failed" = 0 ]; then
    log "stopped: pids ${items[*]%%:*} gone, ports $redis_port $kafka_port $kafka_cport closed"
  fi
  return 0
}

on_exit() {
  local rc=$?
  [ "$rc" = 0 ] || failed=1
  stop_and_verify
  if [ "$failed" = 0 ]; then
    rm -rf -- "$work"
    log "PASS"
    exit 0
  fi
  log "FAIL (logs kept in $work)"
  exit 1
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
log "redis on $redis_port, kafka on $kafka_port (controller $kafka_cport), work dir $work"
out=$("$root/deploy/redis/start" --port "$redis_port" --dir "$rdir")
eval "$out"
out=$("$root/deploy/kafka/start" --brokers 1 --port "$kafka_port" \
        --controller-port "$kafka_cport" --dir "$kdir" --timeout 120)
eval "$out"
log "services up in $((SECONDS - t0)) s: KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP REDIS_URL=$REDIS_URL"

t1=$SECONDS
if ! timeout 240 "$bin" "$KAFKA_BOOTSTRAP" "127.0.0.1:$redis_port"; then
  log "FAIL: $bin exited non-zero"
  tail_file "$kdir/broker-1/server.log" 40
  log_errors "$kdir/broker-1/server.log"
  failed=1
fi
log "smoke binary took $((SECONDS - t1)) s"

stop_and_verify
[ "$failed" = 0 ]
