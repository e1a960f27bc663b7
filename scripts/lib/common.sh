# shellcheck shell=bash
# Sourced by the bash scripts beside this folder, so each thing they share is
# written once. Sets CACHE_DIR; defines free_port and stop_process.

# The Makefile exports HYBRIDSTACK_CACHE; the same default applies when a
# script is run by hand.
# shellcheck disable=SC2034  # read by the scripts that source this file
CACHE_DIR="${HYBRIDSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hybridstack}"

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Ask PID to stop, give it GRACE seconds (default 5), then kill it (saying
# so on stderr) and wait up to 5 s more for it to be gone. No error if it is
# not running.
stop_process() {
  local pid="$1" grace="${2:-5}" _
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "process $pid still running ${grace}s after TERM: killed" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}
