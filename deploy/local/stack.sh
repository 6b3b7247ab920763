#!/usr/bin/env bash
# The four services and the ops console as background processes on 127.0.0.1, against the
# local Kafka and PostgreSQL (start those first: `make up` does it all).
#
#   deploy/local/stack.sh start|stop|status|logs
#
# Ports: invoicing 8081, rules 8082, credits 8083, payments 8084, console 8085. Logs and pid files
# in $TALLY_LOCAL_DIR/run (default <repo>/.local/run). Start when running is a no-op.
#
# Kafka at 127.0.0.1:$TALLY_KAFKA_PORT (9092) and PostgreSQL at 127.0.0.1:$TALLY_PG_PORT (5432)
# unless TALLY_KAFKA_BOOTSTRAP / TALLY_DATABASE_URL say otherwise. Each service is its own
# identity: its Kafka principal's password from the broker's credentials folder (made by
# kafka.sh; TALLY_KAFKA_CREDENTIALS_DIR), and its own database role, whose password
# postgres.sh put in the server's pgpass file (PGPASSFILE).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
local_dir=${TALLY_LOCAL_DIR:-$repo/.local}
run="$local_dir/run"
kafka_port=${TALLY_KAFKA_PORT:-9092}
pg_port=${TALLY_PG_PORT:-5432}
export TALLY_KAFKA_BOOTSTRAP=${TALLY_KAFKA_BOOTSTRAP:-127.0.0.1:$kafka_port}
if [[ -z ${TALLY_KAFKA_CREDENTIALS_DIR:-} && -d $local_dir/kafka-$kafka_port/credentials ]]; then
  export TALLY_KAFKA_CREDENTIALS_DIR="$local_dir/kafka-$kafka_port/credentials"
fi
if [[ -z ${TALLY_DATABASE_URL:-} ]]; then
  if [[ -f $local_dir/pg-$pg_port/pgpass ]]; then
    export TALLY_DATABASE_URL="postgresql://{service}@127.0.0.1:$pg_port/{service}"
    export PGPASSFILE=${PGPASSFILE:-$local_dir/pg-$pg_port/pgpass}
  else  # a server made before roles existed: postgres.sh tells what to do
    export TALLY_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/{service}"
  fi
fi
python="$repo/.venv/bin/python"  # made by `make setup` (uv sync)
declare -A ports=([invoicing]=8081 [rules]=8082 [credits]=8083 [payments]=8084 [console]=8085)
services=(invoicing rules credits payments console)

is_running() { [[ -f $run/$1.pid ]] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }
healthy() { curl -fsS "http://127.0.0.1:${ports[$1]}/health" >/dev/null 2>&1; }

start() {
  mkdir -p "$run"
  (cd "$repo" && "$python" -m console setup)  # the operator's password under .local/console (made once)
  for s in "${services[@]}"; do
    if is_running "$s"; then continue; fi
    # exec: the pid file names the service's own process (not a shell waiting for it).
    (cd "$repo" && TALLY_HTTP_PORT=${ports[$s]} TALLY_CONSOLE_PORT=${ports[console]} exec nohup "$python" -m "$s" >>"$run/$s.log" 2>&1) &
    echo $! >"$run/$s.pid"
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
