#!/usr/bin/env bash
# The four services and the ops console as background processes on 127.0.0.1, against the
# local Kafka and PostgreSQL (start those first: `make up` does it all).
#
#   deploy/local/stack.sh start|stop|status|logs
#
# Ports: invoicing 8081, rules 8082, credits 8083, payments 8084, console 8085. Logs and pid files
# in $TALLY_LOCAL_DIR/run (default <repo>/.local/run). Start when running is a no-op.
#
# TALLY_INSTANCES=N (1 to 6; default 1) runs N instances of each of the four services: instance i
# (1..N) of a service listens on its port + 10(i-1) (invoicing 8081, 8091, 8101...), logs to
# run/<service>-<i>.log (instance 1: run/<service>.log) and shares the service's database and
# consumer groups with the others: Kafka spreads the partitions of each topic (6) over them,
# and a customer's messages stay on one partition, so one instance handles them at a time.
# The console stays one. `stop` and `status` cover every instance started, whatever N is now.
# With TALLY_KAFKA_BROKERS=3 the services connect to kafka.sh's three-broker cluster.
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
instances=${TALLY_INSTANCES:-1}
[[ $instances =~ ^[1-6]$ ]] || { echo "stack.sh: TALLY_INSTANCES must be 1 to 6 (got $instances)" >&2; exit 2; }
if [[ -z ${TALLY_KAFKA_BOOTSTRAP:-} && ${TALLY_KAFKA_BROKERS:-1} != 1 ]]; then
  TALLY_KAFKA_BOOTSTRAP=$(TALLY_KAFKA_PORT=$kafka_port "$here/kafka.sh" bootstrap)
fi
export TALLY_KAFKA_BOOTSTRAP=${TALLY_KAFKA_BOOTSTRAP:-127.0.0.1:$kafka_port}
kafka_home=$local_dir/kafka-$kafka_port
[[ ${TALLY_KAFKA_BROKERS:-1} == 1 ]] || kafka_home=$local_dir/kafka-cluster-$kafka_port
if [[ -z ${TALLY_KAFKA_CREDENTIALS_DIR:-} && -d $kafka_home/credentials ]]; then
  export TALLY_KAFKA_CREDENTIALS_DIR="$kafka_home/credentials"
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

# A process is "<service>" (instance 1) or "<service>-<i>": its pid file, log and port.
processes() {
  # Every process to start: each service N times, the console once.
  local s i
  for s in "${services[@]}"; do
    echo "$s"
    if [[ $s != console ]]; then for i in $(seq 2 "$instances"); do echo "$s-$i"; done; fi
  done
}
started() {
  # Every process with a pid file (whatever TALLY_INSTANCES was when it was started).
  local f
  for f in "$run"/*.pid; do [[ -e $f ]] && basename "$f" .pid; done
}
service_of() { echo "${1%-[0-9]}"; }
port_of() {
  local s; s=$(service_of "$1")
  local i=1; [[ $1 == "$s" ]] || i=${1##*-}
  echo $((ports[$s] + 10 * (i - 1)))
}

is_running() { [[ -f $run/$1.pid ]] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }
healthy() { curl -fsS "http://127.0.0.1:$(port_of "$1")/health" >/dev/null 2>&1; }

start() {
  mkdir -p "$run"
  (cd "$repo" && "$python" -m console setup)  # the operator's password under .local/console (made once)
  local p
  for p in $(processes); do
    if is_running "$p"; then continue; fi
    # exec: the pid file names the service's own process (not a shell waiting for it).
    (cd "$repo" && TALLY_HTTP_PORT=$(port_of "$p") TALLY_CONSOLE_PORT=${ports[console]} exec nohup "$python" -m "$(service_of "$p")" >>"$run/$p.log" 2>&1) &
    echo $! >"$run/$p.pid"
  done
  for p in $(processes); do
    for _ in $(seq 1 120); do
      healthy "$p" && break
      is_running "$p" || { echo "stack.sh: $p exited; see $run/$p.log" >&2; tail -n 20 "$run/$p.log" >&2; exit 1; }
      sleep 0.5
    done
    healthy "$p" || { echo "stack.sh: $p not healthy after 60 s; see $run/$p.log" >&2; exit 1; }
    echo "$p: healthy on http://127.0.0.1:$(port_of "$p") (log $run/$p.log)"
  done
}

stop() {
  local p
  for p in $(started); do
    if is_running "$p"; then
      kill "$(cat "$run/$p.pid")"
      for _ in $(seq 1 40); do is_running "$p" || break; sleep 0.25; done
      is_running "$p" && kill -9 "$(cat "$run/$p.pid")"
      echo "$p: stopped"
    fi
    rm -f "$run/$p.pid"
  done
}

status() {
  local code=0 p
  for p in $( (processes; started) | sort -u); do
    if healthy "$p"; then echo "$p: $(curl -fsS "http://127.0.0.1:$(port_of "$p")/health")"; else echo "$p: not running"; code=1; fi
  done
  return $code
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  logs) for p in $( (processes; started) | sort -u); do echo "== $p"; tail -n 20 "$run/$p.log" 2>/dev/null || true; done ;;
  *) echo "usage: $0 start|stop|status|logs" >&2; exit 2 ;;
esac
