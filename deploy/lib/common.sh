# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Helpers shared by the deploy/*/start and deploy/*/stop scripts.
# Sourced, not run. Callers set LOG_TAG before using log/die.
#
# Process handling rule: a script only ever signals a PID it recorded itself,
# and only while /proc/PID/cmdline still carries a string unique to the
# instance (its directory), so a recycled PID is never hit. No pkill/killall.

log() { printf '%s: %s\n' "${LOG_TAG:-deploy}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# port_in_use PORT: true if something on this host listens on TCP PORT.
port_in_use() {
  local port=$1
  if command -v ss >/dev/null; then
    [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

# port_open PORT: true if a connect to 127.0.0.1:PORT succeeds.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

valid_port() {
  case "$1" in ''|*[!0-9]*) return 1 ;; esac
  [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

# proc_ours PID MARK: true if PID is a live (non-zombie) process whose
# command line contains MARK.
proc_ours() {
  local pid=$1 mark=$2 state cmd
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  [ -r "/proc/$pid/stat" ] || return 1
  # Field 3 of /proc/PID/stat is the state; the comm before it may hold
  # spaces, so cut after the last ')'.
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ "$state" != Z ] && [ "$state" != X ] || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  case "$cmd" in *"$mark"*) return 0 ;; esac
  return 1
}

# stop_procs TIMEOUT PID:MARK...: SIGTERM each process that is still ours,
# wait up to TIMEOUT seconds, SIGKILL the rest, and fail if any survives.
stop_procs() {
  local timeout=$1; shift
  local item pid mark left deadline
  for item in "$@"; do
    pid=${item%%:*}; mark=${item#*:}
    if proc_ours "$pid" "$mark"; then
      log "SIGTERM $pid"
      kill -TERM "$pid" 2>/dev/null || true
    elif proc_ours "$pid" ""; then
      log "warning: pid $pid is alive but its command line does not name $mark: not ours (PID reused?), not signalled"
    else
      log "pid $pid is not running"
    fi
  done
  deadline=$((SECONDS + timeout))
  while :; do
    left=()
    for item in "$@"; do
      pid=${item%%:*}; mark=${item#*:}
      proc_ours "$pid" "$mark" && left+=("$item")
    done
    [ ${#left[@]} -eq 0 ] && return 0
    [ $SECONDS -ge $deadline ] && break
    sleep 0.2
  done
  for item in "${left[@]}"; do
    pid=${item%%:*}; mark=${item#*:}
    if proc_ours "$pid" "$mark"; then
      log "still running after ${timeout}s: SIGKILL $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  deadline=$((SECONDS + 10))
  while [ $SECONDS -lt $deadline ]; do
    left=()
    for item in "$@"; do
      pid=${item%%:*}; mark=${item#*:}
      proc_ours "$pid" "$mark" && left+=("$item")
    done
    [ ${#left[@]} -eq 0 ] && return 0
    sleep 0.2
  done
  log "error: processes survived SIGKILL: ${left[*]%%:*}"
  return 1
}

# new_instance_dir KIND DIR: resolve or create the instance directory.
# Prints the absolute path; writes .shoal-created when we made it with
# mktemp, which is what lets stop remove it.
new_instance_dir() {
  local kind=$1 dir=$2
  if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/shoal-$kind.XXXXXX")
    : >"$dir/.shoal-created"
  else
    mkdir -p "$dir"
  fi
  (cd "$dir" && pwd -P)
}

# log_errors FILE [N]: print the last N ERROR/FATAL/exception lines of FILE.
log_errors() {
  local f=$1 n=${2:-15} lines
  [ -s "$f" ] || return 0
  lines=$(grep -E '(^|[] ])(ERROR|FATAL)[: ]|Exception|Error:' "$f" | tail -n "$n") || true
  if [ -n "$lines" ]; then
    printf -- '----- error lines in %s -----\n%s\n-----\n' "$f" "$lines" >&2
  fi
}

# tail_file FILE [N]: print the last N lines of FILE to stderr with a header.
tail_file() {
  local f=$1 n=${2:-40}
  if [ -s "$f" ]; then
    printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
    tail -n "$n" "$f" >&2
    printf -- '-----\n' >&2
  fi
}
