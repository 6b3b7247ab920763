#!/usr/bin/env bash
# The four services as background processes on 127.0.0.1, against the local Kafka
# and PostgreSQL (start those first: `make up` does it all).
#
#   deploy/local/stack.sh start|stop|status|logs
#
# Ports: invoicing 8081, rules 8082, credits 8083, payments 8084. Logs and pid files
# in $TALLY_LOCAL_DIR/run (default <repo>/.local/run). Start when running is a no-op.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
run="${TALLY_LOCAL_DIR:-$repo/.local}/run"
python="$repo/.venv/bin/python"  # made by `make setup` (uv sync)
declare -A ports=([invoicing]=8081 [rules]=8082 [credits]=8083 [payments]=8084)
services=(invoicing rules credits payments)

is_running() { [[ -f $run/$1.pid ]] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }
healthy() { curl -fsS "http://127.0.0.1:${ports[$1]}/health" >/dev/null 2>&1; }

start() {
  mkdir -p "$run"
  for s in "${services[@]}"; do
    if is_running "$s"; then continue; fi
    (cd "$repo" && TALLY_HTTP_PORT=${ports[$s]} nohup "$python" -m "$s" >>"$run/$s.log" 2>&1 &
      echo $! >"$run/$s.pid")
  done
  for s in "${services[@]}"; do
    for _ in $(seq 1 120); do
      healthy "$s" && break
      is_running "$s" || { echo "stack.sh: $s exited; see $run/$s.log" >&2; tail -n 20 "$run/$s.log" >&2; exit 1; }
      sleep 0.5
    done
    healthy "$s" || { echo "stack.sh: $s not healthy after 60 s; see $run/$s.log" >&2; exit 1; }
    echo "$s: healthy on http://127.0.0.1:${ports[$s]} (log $run/$s.log)"
  done
}

stop() {
  for s in "${services[@]}"; do
    if is_running "$s"; then
      kill "$(cat "$run/$s.pid")"
      for _ in $(seq 1 40); do is_running "$s" || break; sleep 0.25; done
      is_running "$s" && kill -9 "$(cat "$run/$s.pid")"
      echo "$s: stopped"
    fi
    rm -f "$run/$s.pid"
    # A service whose pid file was lost (or started by an earlier checkout run) still goes.
    if pkill -TERM -f "^$python -m $s\$" 2>/dev/null; then
      for _ in $(seq 1 40); do pgrep -f "^$python -m $s\$" >/dev/null || break; sleep 0.25; done
      pkill -KILL -f "^$python -m $s\$" 2>/dev/null || true
      echo "$s: stopped (no pid file)"
    fi
  done
}

status() {
  local code=0
  for s in "${services[@]}"; do
    if healthy "$s"; then echo "$s: $(curl -fsS "http://127.0.0.1:${ports[$s]}/health")"; else echo "$s: not running"; code=1; fi
  done
  return $code
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  logs) for s in "${services[@]}"; do echo "== $s"; tail -n 20 "$run/$s.log" 2>/dev/null || true; done ;;
  *) echo "usage: $0 start|stop|status|logs" >&2; exit 2 ;;
esac
