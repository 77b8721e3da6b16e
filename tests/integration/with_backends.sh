#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run a command against a fresh Redis and one-broker Kafka:
#   tests/integration/with_backends.sh CMD [ARGS...]
# starts both on free loopback ports with deploy/*/start, runs CMD with
# SHOAL_TEST_REDIS_URL and SHOAL_TEST_KAFKA set, stops both (also on
# failure) and exits with CMD's status. The work directory is removed on
# success and kept on failure.
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
# shellcheck source-path=SCRIPTDIR source=../../deploy/lib/common.sh
. "$root/deploy/lib/common.sh"
LOG_TAG=with_backends.sh

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

work=$(mktemp -d "${TMPDIR:-/tmp}/shoal-with-backends.XXXXXX")
rc=1
on_exit() {
  [ -d "$work/kafka" ] && { "$root/deploy/kafka/stop" --dir "$work/kafka" || rc=1; }
  [ -d "$work/redis" ] && { "$root/deploy/redis/stop" --dir "$work/redis" || rc=1; }
  if [ "$rc" = 0 ]; then rm -rf -- "$work"; else log "FAIL (logs kept in $work)"; fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

out=$("$root/deploy/redis/start" --port "$(free_port)" --dir "$work/redis")
eval "$out"
out=$("$root/deploy/kafka/start" --brokers 1 --port "$(free_port)" --controller-port "$(free_port)" \
  --dir "$work/kafka" --timeout 120)
eval "$out"
log "redis $REDIS_URL, kafka $KAFKA_BOOTSTRAP"
set +e
SHOAL_TEST_REDIS_URL="$REDIS_URL" SHOAL_TEST_KAFKA="$KAFKA_BOOTSTRAP" "$@"
rc=$?
set -e
