#!/usr/bin/env bash
# Apache Kafka (KRaft, one combined broker+controller on 127.0.0.1) from Maven Central
# artifacts, run with the machine's Java. No Docker, no tarball downloads.
#
#   deploy/local/kafka.sh start|stop|kill|status|logs|wipe
#
# `kill` stops the broker with SIGKILL (no controlled shutdown: the fault harness uses it to
# test recovery); `stop` shuts it down cleanly (SIGTERM, SIGKILL only after 30 s).
#
# Settings (environment): TALLY_KAFKA_PORT (9092), TALLY_LOCAL_DIR (<repo>/.local),
# TALLY_KAFKA_START_SECONDS (60: how long `start` waits for "Kafka Server started"; a broker
# recovering a large log after `kill` on a busy machine can need more).
# The controller listens on TALLY_KAFKA_PORT+1. Start when running is a no-op.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
local_dir=${TALLY_LOCAL_DIR:-$repo/.local}
port=${TALLY_KAFKA_PORT:-9092}
controller_port=$((port + 1))
start_seconds=${TALLY_KAFKA_START_SECONDS:-60}
home="$local_dir/kafka-$port"
lib="$local_dir/kafka-lib"
pidfile="$home/kafka.pid"
logfile="$home/kafka.log"

is_running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

resolve() {
  # Cached: Maven runs only when the jars are missing or the POM changed.
  local stamp="$lib/.pom.sha"
  local want; want=$(sha256sum "$here/kafka/pom.xml" | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  command -v mvn >/dev/null || { echo "kafka.sh: Maven (mvn) is needed to resolve Kafka" >&2; exit 1; }
  command -v java >/dev/null || { echo "kafka.sh: Java 17+ is needed to run Kafka" >&2; exit 1; }
  echo "kafka.sh: resolving Kafka from Maven Central into $lib" >&2
  rm -rf "$lib"; mkdir -p "$lib"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib" >&2
  echo "$want" > "$stamp"
}

java_run() {
  java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.xml" -cp "$lib/*" "$@"
}

write_config() {
  mkdir -p "$home/data"
  cat > "$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$home/data
num.partitions=6
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
PROPS
}

start() {
  if is_running; then echo "kafka: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return; fi
  if port_open "$port"; then echo "kafka.sh: 127.0.0.1:$port is taken by another process" >&2; exit 1; fi
  resolve
  write_config
  if [[ ! -f $home/data/meta.properties ]]; then
    local cluster_id; cluster_id=$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$home/server.properties" >>"$logfile" 2>&1
  fi
  local seen; seen=$( (grep -c "" "$logfile" 2>/dev/null || true) | tail -n1)
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.xml" -cp "$lib/*" \
    kafka.Kafka "$home/server.properties" >>"$logfile" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 $((start_seconds * 2))); do
    if ! is_running; then echo "kafka.sh: broker exited; see $logfile" >&2; tail -n 30 "$logfile" >&2; exit 1; fi
    # Only this start's lines count: the log is appended to across restarts.
    if port_open "$port" && tail -n +"$((${seen:-0} + 1))" "$logfile" | grep -q "Kafka Server started"; then
      echo "kafka: running on 127.0.0.1:$port (pid $(cat "$pidfile")), log $logfile"; return
    fi
    sleep 0.5
  done
  echo "kafka.sh: broker not ready after $start_seconds s; see $logfile" >&2; tail -n 30 "$logfile" | cut -c1-400 >&2; exit 1
}

stop() {
  if ! is_running; then echo "kafka: not running"; rm -f "$pidfile"; return; fi
  local pid; pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$pidfile"; echo "kafka: stopped"
}

hard_kill() {
  if ! is_running; then echo "kafka: not running"; rm -f "$pidfile"; return; fi
  local pid; pid=$(cat "$pidfile")
  kill -9 "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  rm -f "$pidfile"; echo "kafka: killed (SIGKILL)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill) hard_kill ;;
  status) if is_running; then echo "kafka: running on 127.0.0.1:$port"; else echo "kafka: not running"; exit 1; fi ;;
  logs) tail -n 100 "$logfile" ;;
  wipe) stop; rm -rf "$home" ;;
  *) echo "usage: $0 start|stop|kill|status|logs|wipe" >&2; exit 2 ;;
esac
