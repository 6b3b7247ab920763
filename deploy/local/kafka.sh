#!/usr/bin/env bash
# Apache Kafka (KRaft, one combined broker+controller on 127.0.0.1, or a cluster of three) from
# Maven Central artifacts, run with the machine's Java. No Docker, no tarball downloads.
#
#   deploy/local/kafka.sh start|stop|kill [node]|status|logs|wipe|grant|set-password <principal>|bootstrap
#
# TALLY_KAFKA_BROKERS=3 runs a three-node cluster instead of the single broker: nodes 1..3,
# each a combined controller+broker (a controller quorum of three: one node may be lost), node i
# listening on TALLY_KAFKA_PORT + 2(i-1) (clients) and that + 1 (controller), with its own
# folder .local/kafka-cluster-<port>/node-<i> (log dir, server.properties, kafka.log,
# kafka.pid; never the single broker's .local/kafka-<port>); one credentials folder beside
# them, one set of identities, internal topics with replication factor 3 and
# min.insync.replicas=2 (so are the project's topics: topic_admin picks RF 3 on a cluster).
# `start`, `stop` and `kill` act on every node, or on one with `start 2`, `kill 2`: the fault
# harness kills one broker and starts it again. `bootstrap` prints the bootstrap string (every
# node). The default, TALLY_KAFKA_BROKERS=1, is the single broker of the demo and the tests.
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
# Settings (environment): TALLY_KAFKA_PORT (9092), TALLY_KAFKA_BROKERS (1 or 3),
# TALLY_KAFKA_HEAP (768m for one broker, 512m per node of a cluster), TALLY_LOCAL_DIR (<repo>/.local),
# TALLY_KAFKA_START_SECONDS (60: how long `start` waits for "Kafka Server started"; a broker
# recovering a large log after `kill` on a busy machine can need more).
# The controller listens on TALLY_KAFKA_PORT+1. Start when running is a no-op.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
local_dir=${TALLY_LOCAL_DIR:-$repo/.local}
port=${TALLY_KAFKA_PORT:-9092}
brokers=${TALLY_KAFKA_BROKERS:-1}
case "$brokers" in 1|3) ;; *) echo "kafka.sh: TALLY_KAFKA_BROKERS must be 1 or 3 (got $brokers)" >&2; exit 2 ;; esac
start_seconds=${TALLY_KAFKA_START_SECONDS:-60}
if [[ $brokers == 1 ]]; then home="$local_dir/kafka-$port"; else home="$local_dir/kafka-cluster-$port"; fi
lib="$local_dir/kafka-lib"
credentials="$home/credentials"
acls="$here/acls.tsv"
python="$repo/.venv/bin/python"  # made by `make setup` (uv sync)
if [[ $brokers == 1 ]]; then heap=${TALLY_KAFKA_HEAP:-768m}; else heap=${TALLY_KAFKA_HEAP:-512m}; fi
replication=$((brokers == 3 ? 3 : 1))
min_isr=$((brokers == 3 ? 2 : 1))

# Node i (1..$brokers): its client port, controller port and folder. The single broker keeps
# the layout it always had (everything directly in $home).
nodes() { seq 1 "$brokers"; }
node_name() { if [[ $brokers == 1 ]]; then echo "kafka:"; else echo "kafka: node $1"; fi; }
node_port() { echo $((port + 2 * ($1 - 1))); }
node_home() { if [[ $brokers == 1 ]]; then echo "$home"; else echo "$home/node-$1"; fi; }
pidfile_of() { echo "$(node_home "$1")/kafka.pid"; }
logfile_of() { echo "$(node_home "$1")/kafka.log"; }
bootstrap() { local i out=(); for i in $(nodes); do out+=("127.0.0.1:$(node_port "$i")"); done; (IFS=,; echo "${out[*]}"); }
voters() { local i out=(); for i in $(nodes); do out+=("$i@127.0.0.1:$(($(node_port "$i") + 1))"); done; (IFS=,; echo "${out[*]}"); }
all_bootstrap=$(bootstrap)

is_running() { local f; f=$(pidfile_of "$1"); [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; }
any_running() { local i; for i in $(nodes); do is_running "$i" && return 0; done; return 1; }

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
  # server.properties of node $1.
  local node_dir; node_dir=$(node_home "$1")
  local client_port; client_port=$(node_port "$1")
  mkdir -p "$node_dir/data"
  (umask 077; cat > "$node_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$1
controller.quorum.voters=$(voters)
controller.listener.names=CONTROLLER
listeners=SASL_PLAINTEXT://127.0.0.1:$client_port,CONTROLLER://127.0.0.1:$((client_port + 1))
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$client_port
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
log.dirs=$node_dir/data
num.partitions=6
auto.create.topics.enable=false
# One broker: replication factor 1. Three: every partition on all three, a write acknowledged
# (acks=all) once on two of them, so losing one broker loses no acknowledged message.
default.replication.factor=$replication
min.insync.replicas=$min_isr
unclean.leader.election.enable=false
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
PROPS
  )
  if [[ $brokers != 1 ]]; then
    # A dead follower leaves the ISR after 10 s (default 30 s): acks=all writes wait that long.
    echo "replica.lag.time.max.ms=10000" >> "$node_dir/server.properties"
  fi
}

format_storage() {
  # Once per node, on a fresh folder: one cluster id, every SCRAM user (KIP-900).
  local scram=() p i
  for p in $(principals); do
    scram+=(--add-scram "SCRAM-SHA-512=[name=$p,password=$(password_of "$p")]")
  done
  local cluster_id; cluster_id=$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
  for i in "$@"; do
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$(node_home "$i")/server.properties" \
      "${scram[@]}" >>"$(logfile_of "$i")" 2>&1
  done
}

launch() {
  # Start node $1's JVM in the background; prints how many lines its log had before.
  local seen; seen=$( (grep -c "" "$(logfile_of "$1")" 2>/dev/null || true) | tail -n1)
  nohup java -Xms128m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.xml" -cp "$lib/*" \
    kafka.Kafka "$(node_home "$1")/server.properties" >>"$(logfile_of "$1")" 2>&1 &
  echo $! > "$(pidfile_of "$1")"
  echo "${seen:-0}"
}

wait_started() {
  # Node $1 says "Kafka Server started" in this start's lines ($2: lines before) and its port is open.
  local logfile; logfile=$(logfile_of "$1")
  for _ in $(seq 1 $((start_seconds * 2))); do
    if ! is_running "$1"; then echo "kafka.sh: node $1 exited; see $logfile" >&2; tail -n 30 "$logfile" >&2; return 1; fi
    # Only this start's lines count: the log is appended to across restarts.
    if port_open "$(node_port "$1")" && tail -n +"$(($2 + 1))" "$logfile" | grep -q "Kafka Server started"; then
      return 0
    fi
    sleep 0.5
  done
  echo "kafka.sh: node $1 not ready after $start_seconds s; see $logfile" >&2; tail -n 30 "$logfile" | cut -c1-400 >&2
  return 1
}

start() {
  # Every node, or only node $1 (a restart of one broker of a running cluster).
  local wanted=("$@"); [[ ${#wanted[@]} -gt 0 ]] || mapfile -t wanted < <(nodes)
  local i todo=()
  for i in "${wanted[@]}"; do
    [[ $i =~ ^[0-9]+$ && $i -ge 1 && $i -le $brokers ]] || { echo "kafka.sh: no node $i (TALLY_KAFKA_BROKERS=$brokers)" >&2; exit 2; }
    if is_running "$i"; then
      echo "$(node_name "$i") already running on 127.0.0.1:$(node_port "$i") (pid $(cat "$(pidfile_of "$i")"))"
      continue
    fi
    if port_open "$(node_port "$i")" || port_open "$(($(node_port "$i") + 1))"; then
      echo "kafka.sh: 127.0.0.1:$(node_port "$i") or the port after it is taken by another process" >&2; exit 1
    fi
    todo+=("$i")
  done
  [[ ${#todo[@]} -gt 0 ]] || return 0
  resolve
  if [[ -f $(node_home 1)/data/meta.properties && ! -f $credentials/admin.password ]]; then
    echo "kafka.sh: $home was formatted before Kafka had identities (no SCRAM users, no ACLs)." >&2
    echo "kafka.sh: run \`deploy/local/kafka.sh wipe\` (deletes its topics) and start again." >&2
    exit 1
  fi
  local fresh=()
  for i in "${todo[@]}"; do [[ -f $(node_home "$i")/data/meta.properties ]] || fresh+=("$i"); done
  if [[ ${#fresh[@]} -gt 0 ]]; then
    if [[ ${#fresh[@]} -ne $brokers ]]; then
      echo "kafka.sh: nodes ${fresh[*]} of $home have no storage while others do: \`wipe\` and start again" >&2; exit 1
    fi
    # A password already in $credentials is kept (one can be chosen before the first start).
    rm -f "$home/granted.sha"
    local p
    for p in controller $(principals); do  # controller: the controller listener's PLAIN login
      [[ -f $credentials/$p.password ]] || write_password "$p"
    done
    write_admin_client_config
    for i in "${fresh[@]}"; do write_config "$i"; done
    format_storage "${fresh[@]}"
  fi
  # Every JVM first (a node of a cluster is ready only once a quorum of controllers is up).
  declare -A seen=()
  for i in "${todo[@]}"; do write_config "$i"; seen[$i]=$(launch "$i"); done
  for i in "${todo[@]}"; do
    wait_started "$i" "${seen[$i]}" || exit 1
    echo "$(node_name "$i") running on 127.0.0.1:$(node_port "$i") (pid $(cat "$(pidfile_of "$i")")), log $(logfile_of "$i")"
  done
  [[ $brokers == 1 ]] || echo "kafka: bootstrap $all_bootstrap"
  # Topics and ACLs once per version of acls.tsv (a new row is granted at the next start), when
  # every node is up (topics get their replication factor from the brokers the cluster has).
  for i in $(nodes); do is_running "$i" || return 0; done
  if [[ $(cat "$home/granted.sha" 2>/dev/null) != "$(sha256sum "$acls" | cut -d' ' -f1)" ]]; then grant; fi
}

stop_node() {
  # $1: node, $2: signal (TERM: controlled shutdown, SIGKILL after 30 s; KILL: no shutdown).
  local f; f=$(pidfile_of "$1")
  if ! is_running "$1"; then echo "$(node_name "$1") not running"; rm -f "$f"; return; fi
  local pid; pid=$(cat "$f")
  kill "-$2" "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$f"
  if [[ $2 == KILL ]]; then echo "$(node_name "$1") killed (SIGKILL)"; else echo "$(node_name "$1") stopped"; fi
}

stop_nodes() {
  local sig=$1; shift
  local wanted=("$@"); [[ ${#wanted[@]} -gt 0 ]] || mapfile -t wanted < <(nodes)
  local i
  if [[ $sig == TERM && ${#wanted[@]} -gt 1 ]]; then
    # All at once: a controlled shutdown of the last nodes waits for a controller quorum.
    for i in "${wanted[@]}"; do is_running "$i" && kill -TERM "$(cat "$(pidfile_of "$i")")"; done
  fi
  for i in "${wanted[@]}"; do stop_node "$i" "$sig"; done
}

status() {
  local i code=0
  for i in $(nodes); do
    if is_running "$i"; then
      echo "$(node_name "$i") running on 127.0.0.1:$(node_port "$i")"
    else
      echo "$(node_name "$i") not running"; code=1
    fi
  done
  return $code
}

set_scram_password() {
  # A new password for principal $1 on the running broker, as admin (Kafka's ConfigCommand:
  # aiokafka has no SCRAM API); the file changes only once the broker has it.
  mkdir -p "$credentials"; chmod 700 "$credentials"
  local next="$credentials/$1.password.next"
  (umask 077; new_password > "$next")
  local out
  if ! out=$(java_run kafka.admin.ConfigCommand --bootstrap-server "$all_bootstrap" \
    --command-config "$credentials/admin.properties" --alter --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$(cat "$next")]" 2>&1); then
    rm -f "$next"; echo "kafka.sh: setting $1's password failed:" >&2; echo "$out" | tail -n 5 >&2; exit 1
  fi
  mv "$next" "$credentials/$1.password"
}

grant() {
  # Topics and acls.tsv's ACLs, as admin; a principal new in acls.tsv gets its SCRAM user first.
  any_running || { echo "kafka.sh: not running; start it first" >&2; exit 1; }
  [[ -x $python ]] || { echo "kafka.sh: $python is missing: run \`make setup\` first" >&2; exit 1; }
  local p
  for p in $(principals); do
    if [[ ! -f $credentials/$p.password ]]; then
      set_scram_password "$p"; echo "kafka: SCRAM user $p added"
    fi
  done
  TALLY_KAFKA_BOOTSTRAP="$all_bootstrap" TALLY_KAFKA_CREDENTIALS_DIR="$credentials" TALLY_KAFKA_USERNAME= \
    "$python" -m tally_messaging.identities grant --principal admin --table "$acls"
  sha256sum "$acls" | cut -d' ' -f1 > "$home/granted.sha"
}

set_password() {
  local principal=${1:?usage: kafka.sh set-password <principal>}
  any_running || { echo "kafka.sh: not running; start it first" >&2; exit 1; }
  principals | grep -qx "$principal" || { echo "kafka.sh: $principal is not in $acls" >&2; exit 1; }
  set_scram_password "$principal"
  if [[ $principal == admin ]]; then
    local i
    write_admin_client_config; for i in $(nodes); do write_config "$i"; done
    echo "kafka: admin's password changed; the brokers use the new one from their next start"
  fi
  echo "kafka: new password for $principal in $credentials/$principal.password; restart its clients"
}

logs() {
  local i
  for i in $(nodes); do
    [[ $brokers == 1 ]] || echo "== node $i ($(logfile_of "$i"))"
    tail -n 100 "$(logfile_of "$i")" 2>/dev/null || true
  done
}

command=${1:-}; shift || true
case "$command" in
  start) start "$@" ;;
  stop) stop_nodes TERM "$@" ;;
  kill) stop_nodes KILL "$@" ;;
  status) status ;;
  logs) logs ;;
  wipe) stop_nodes TERM; rm -rf "$home" ;;
  grant) grant ;;
  set-password) set_password "${1:-}" ;;
  bootstrap) echo "$all_bootstrap" ;;
  *) echo "usage: $0 start|stop|kill [node]|status|logs|wipe|grant|set-password <principal>|bootstrap" >&2; exit 2 ;;
esac
