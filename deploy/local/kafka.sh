#!/usr/bin/env bash
# Apache Kafka (KRaft, one combined broker+controller on 127.0.0.1) from Maven Central
# artifacts, run with the machine's Java. No Docker, no tarball downloads.
#
#   deploy/local/kafka.sh start|stop|kill|status|logs|wipe|grant|set-password <principal>
#
# Identities: clients authenticate with SASL/SCRAM-SHA-512 (the only client listener) and the
# StandardAuthorizer allows only what deploy/local/acls.tsv grants (`admin` is the super user
# that sets up). Every principal of acls.tsv, and `admin`, gets a generated password in
# $home/credentials/<principal>.password (mode 600, under .local: never committed); the
# runtime reads them through TALLY_KAFKA_CREDENTIALS_DIR (or TALLY_KAFKA_USERNAME/PASSWORD).
# `start` on a fresh folder formats the storage with every SCRAM user (KIP-900), starts the
# broker, then (as admin) creates the topics and grants acls.tsv; a later start (or `grant`)
# does that again when acls.tsv changed, first adding the SCRAM user of a new principal.
# Grants only add: an ACL whose row was deleted must be removed by hand (the identities
# test then says which). `set-password <principal>` makes a
# new password and sets it on the running broker: rotation. The controller listener is
# on 127.0.0.1 with SASL/PLAIN for the login `controller` (KRaft controllers cannot use SCRAM).
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
credentials="$home/credentials"
acls="$here/acls.tsv"
python="$repo/.venv/bin/python"  # made by `make setup` (uv sync)
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

principals() {
  # admin, then every principal named in acls.tsv (first column), once each.
  echo admin
  grep -v '^#' "$acls" | awk -F'\t' 'NF >= 5 { print $1 }' | sort -u
}

new_password() { head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32; }

password_of() { cat "$credentials/$1.password"; }

write_password() {
  mkdir -p "$credentials"; chmod 700 "$credentials"
  (umask 077; new_password > "$credentials/$1.password")
}

write_admin_client_config() {
  (umask 077; cat > "$credentials/admin.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password_of admin)";
PROPS
  )
}

write_config() {
  mkdir -p "$home/data"
  (umask 077; cat > "$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
listeners=SASL_PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password_of admin)";
# The controller listener authenticates too (SASL/PLAIN: KRaft keeps SCRAM users in the very
# metadata the controller serves, so they cannot guard it). Unauthenticated, anyone on this
# machine could reach it as a super user and grant itself ACLs (CreateAcls is a controller API).
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$(password_of controller)" user_controller="$(password_of controller)";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:controller
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
  )
}

start() {
  if is_running; then echo "kafka: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return; fi
  if port_open "$port"; then echo "kafka.sh: 127.0.0.1:$port is taken by another process" >&2; exit 1; fi
  resolve
  if [[ -f $home/data/meta.properties && ! -f $credentials/admin.password ]]; then
    echo "kafka.sh: $home was formatted before Kafka had identities (no SCRAM users, no ACLs)." >&2
    echo "kafka.sh: run \`deploy/local/kafka.sh wipe\` (deletes its topics) and start again." >&2
    exit 1
  fi
  if [[ ! -f $home/data/meta.properties ]]; then
    # A password already in $credentials is kept (one can be chosen before the first start).
    rm -f "$home/granted.sha"
    local scram=() p
    for p in controller $(principals); do  # controller: the controller listener's PLAIN login
      [[ -f $credentials/$p.password ]] || write_password "$p"
    done
    for p in $(principals); do
      scram+=(--add-scram "SCRAM-SHA-512=[name=$p,password=$(password_of "$p")]")
    done
    write_admin_client_config
    write_config
    local cluster_id; cluster_id=$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$home/server.properties" "${scram[@]}" >>"$logfile" 2>&1
  fi
  write_config
  local seen; seen=$( (grep -c "" "$logfile" 2>/dev/null || true) | tail -n1)
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.xml" -cp "$lib/*" \
    kafka.Kafka "$home/server.properties" >>"$logfile" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 $((start_seconds * 2))); do
    if ! is_running; then echo "kafka.sh: broker exited; see $logfile" >&2; tail -n 30 "$logfile" >&2; exit 1; fi
    # Only this start's lines count: the log is appended to across restarts.
    if port_open "$port" && tail -n +"$((${seen:-0} + 1))" "$logfile" | grep -q "Kafka Server started"; then
      echo "kafka: running on 127.0.0.1:$port (pid $(cat "$pidfile")), log $logfile"
      # Topics and ACLs once per version of acls.tsv (a new row is granted at the next start).
      if [[ $(cat "$home/granted.sha" 2>/dev/null) != "$(sha256sum "$acls" | cut -d' ' -f1)" ]]; then grant; fi
      return
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

set_scram_password() {
  # A new password for principal $1 on the running broker, as admin (Kafka's ConfigCommand:
  # aiokafka has no SCRAM API); the file changes only once the broker has it.
  mkdir -p "$credentials"; chmod 700 "$credentials"
  local next="$credentials/$1.password.next"
  (umask 077; new_password > "$next")
  local out
  if ! out=$(java_run kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$port" \
    --command-config "$credentials/admin.properties" --alter --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$(cat "$next")]" 2>&1); then
    rm -f "$next"; echo "kafka.sh: setting $1's password failed:" >&2; echo "$out" | tail -n 5 >&2; exit 1
  fi
  mv "$next" "$credentials/$1.password"
}

grant() {
  # Topics and acls.tsv's ACLs, as admin; a principal new in acls.tsv gets its SCRAM user first.
  is_running || { echo "kafka.sh: not running; start it first" >&2; exit 1; }
  [[ -x $python ]] || { echo "kafka.sh: $python is missing: run \`make setup\` first" >&2; exit 1; }
  local p
  for p in $(principals); do
    if [[ ! -f $credentials/$p.password ]]; then
      set_scram_password "$p"; echo "kafka: SCRAM user $p added"
    fi
  done
  TALLY_KAFKA_BOOTSTRAP="127.0.0.1:$port" TALLY_KAFKA_CREDENTIALS_DIR="$credentials" TALLY_KAFKA_USERNAME= \
    "$python" -m tally_messaging.identities grant --principal admin --table "$acls"
  sha256sum "$acls" | cut -d' ' -f1 > "$home/granted.sha"
}

set_password() {
  local principal=${1:?usage: kafka.sh set-password <principal>}
  is_running || { echo "kafka.sh: not running; start it first" >&2; exit 1; }
  principals | grep -qx "$principal" || { echo "kafka.sh: $principal is not in $acls" >&2; exit 1; }
  set_scram_password "$principal"
  if [[ $principal == admin ]]; then
    write_admin_client_config; write_config
    echo "kafka: admin's password changed; the broker uses the new one from its next start"
  fi
  echo "kafka: new password for $principal in $credentials/$principal.password; restart its clients"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill) hard_kill ;;
  status) if is_running; then echo "kafka: running on 127.0.0.1:$port"; else echo "kafka: not running"; exit 1; fi ;;
  logs) tail -n 100 "$logfile" ;;
  wipe) stop; rm -rf "$home" ;;
  grant) grant ;;
  set-password) set_password "${2:-}" ;;
  *) echo "usage: $0 start|stop|kill|status|logs|wipe|grant|set-password <principal>" >&2; exit 2 ;;
esac
