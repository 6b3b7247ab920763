#!/usr/bin/env bash
# PostgreSQL from the machine's Debian binaries, in a folder of the project's own,
# listening on 127.0.0.1 only, with one database per service.
#
#   deploy/local/postgres.sh start|stop [fast|smart|immediate]|status|logs|wipe|set-password <role>
#
# Identities: password authentication (scram-sha-256) for every connection, no `trust` line
# in pg_hba.conf. The superuser `postgres` (set-up, tests) and one login role per service,
# which owns its database; CONNECT is revoked from PUBLIC on every database, so a service's
# role can connect to its own database only. Generated passwords are in
# $home/credentials/<role>.password and, for libpq/asyncpg, in $home/pgpass (PGPASSFILE):
# mode 600, under .local (never committed). `set-password <role>` makes a new one (rotation).
#
# `stop` shuts down with `pg_ctl stop -m fast` unless told another mode; `stop immediate`
# is a crash as far as the data is concerned (no checkpoint; the next start recovers from
# the WAL): the fault harness uses it.
#
# Settings (environment): TALLY_PG_PORT (5432), TALLY_LOCAL_DIR (<repo>/.local),
# TALLY_PG_FAST=1 turns fsync off (tests only; never for benchmarks or fault runs).
# Start when running is a no-op. Installs postgresql-15 with apt-get when absent.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
local_dir=${TALLY_LOCAL_DIR:-$repo/.local}
port=${TALLY_PG_PORT:-5432}
home="$local_dir/pg-$port"
data="$home/data"
logfile="$home/pg.log"
credentials="$home/credentials"
pgpass="$home/pgpass"
databases=(invoicing credits rules payments)

find_bin() {
  local v
  for v in 17 16 15; do
    if [[ -x /usr/lib/postgresql/$v/bin/pg_ctl ]]; then echo "/usr/lib/postgresql/$v/bin"; return; fi
  done
  return 1
}

pgbin=$(find_bin || true)
if [[ -z $pgbin && ${1:-} == start ]]; then
  echo "postgres.sh: installing postgresql-15 from Debian's packages" >&2
  apt-get update -qq >&2 && apt-get install -y -qq postgresql-15 >&2
  pgbin=$(find_bin)
fi

as_owner() {
  # initdb refuses to run as root: the server runs as the postgres user when we are root.
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

is_running() { [[ -n $pgbin && -f $data/postmaster.pid ]] && as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

new_password() { head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32; }

write_password() {
  mkdir -p "$credentials"; chmod 700 "$credentials"
  (umask 077; new_password > "$credentials/$1.password")
}

write_pgpass() {
  local role
  (umask 077; for role in postgres "${databases[@]}"; do
    echo "127.0.0.1:$port:*:$role:$(cat "$credentials/$role.password")"
  done > "$pgpass")
}

sql() {  # as the superuser, over TCP with its password: psql needs no OS account for that
  PGPASSFILE="$pgpass" "$pgbin/psql" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

create_roles() {
  # Idempotent: a role per service owning its database; CONNECT only for owners (and superusers).
  local db
  for db in "${databases[@]}"; do
    [[ -f $credentials/$db.password ]] || write_password "$db"
  done
  write_pgpass
  for db in "${databases[@]}"; do
    local password; password=$(cat "$credentials/$db.password")
    if sql -tAc "select 1 from pg_roles where rolname='$db'" postgres | grep -q 1; then
      sql -qc "alter role $db login password '$password'" postgres
    else
      sql -qc "create role $db login password '$password'" postgres
    fi
    if ! sql -tAc "select 1 from pg_database where datname='$db'" postgres | grep -q 1; then
      sql -qc "create database $db owner $db" postgres
    fi
    sql -qc "alter database $db owner to $db" postgres
  done
  for db in postgres template1 "${databases[@]}"; do
    sql -qc "revoke connect, temporary on database $db from public" postgres
  done
}

start() {
  if is_running; then echo "postgres: already running on 127.0.0.1:$port"; return; fi
  mkdir -p "$home"
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$home" && chmod 700 "$home"
  if [[ -f $data/PG_VERSION && ! -f $credentials/postgres.password ]]; then
    echo "postgres.sh: $data was made before PostgreSQL had passwords (it trusts every local login)." >&2
    echo "postgres.sh: run \`deploy/local/postgres.sh wipe\` (deletes its databases) and start again." >&2
    exit 1
  fi
  local fresh=0
  if [[ ! -f $data/PG_VERSION ]]; then
    fresh=1
    [[ -f $credentials/postgres.password ]] || write_password postgres  # one chosen before is kept
    local pwfile="$home/initdb.pw"
    cp "$credentials/postgres.password" "$pwfile"
    [[ $(id -u) == 0 ]] && chown postgres:postgres "$pwfile"
    as_owner "$pgbin/initdb" -D "$data" -U postgres --auth=scram-sha-256 --pwfile="$pwfile" \
      -E UTF8 --locale=C.UTF-8 >"$home/initdb.log" 2>&1 || { rm -f "$pwfile"; cat "$home/initdb.log" >&2; exit 1; }
    rm -f "$pwfile"
  fi
  if grep -Eq '^[^#]*[[:space:]]trust([[:space:]]|$)' "$data/pg_hba.conf" 2>/dev/null; then
    echo "postgres.sh: $data/pg_hba.conf has a trust line; refusing to start" >&2; exit 1
  fi
  local opts="-c listen_addresses=127.0.0.1 -p $port -k $home -c max_connections=300 -c password_encryption=scram-sha-256"
  if [[ ${TALLY_PG_FAST:-0} == 1 ]]; then opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"; fi
  as_owner "$pgbin/pg_ctl" -D "$data" -l "$logfile" -w -t 60 -o "$opts" start >/dev/null
  write_pgpass 2>/dev/null || true
  if [[ $fresh == 1 || ! -f $credentials/${databases[-1]}.password ]]; then
    create_roles
  fi
  echo "postgres: running on 127.0.0.1:$port (databases: ${databases[*]}, each owned by its role), log $logfile"
}

set_password() {
  local role=${1:?usage: postgres.sh set-password <role>}
  is_running || { echo "postgres.sh: not running; start it first" >&2; exit 1; }
  [[ $role == postgres || " ${databases[*]} " == *" $role "* ]] || { echo "postgres.sh: no role $role" >&2; exit 1; }
  local next; next=$(new_password)
  sql -qc "alter role $role password '$next'" postgres
  (umask 077; echo "$next" > "$credentials/$role.password")
  write_pgpass
  echo "postgres: new password for $role in $credentials/$role.password (and $pgpass); restart its clients"
}

stop() {
  local mode=${1:-fast}
  case $mode in fast|smart|immediate) ;; *) echo "postgres.sh: stop mode is fast, smart or immediate" >&2; exit 2 ;; esac
  if ! is_running; then echo "postgres: not running"; return; fi
  as_owner "$pgbin/pg_ctl" -D "$data" -m "$mode" -w stop >/dev/null
  if [[ $mode == fast ]]; then echo "postgres: stopped"; else echo "postgres: stopped ($mode)"; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-fast}" ;;
  status) if is_running; then echo "postgres: running on 127.0.0.1:$port"; else echo "postgres: not running"; exit 1; fi ;;
  logs) tail -n 100 "$logfile" ;;
  wipe) stop; rm -rf "$home" ;;
  set-password) set_password "${2:-}" ;;
  *) echo "usage: $0 start|stop [fast|smart|immediate]|status|logs|wipe|set-password <role>" >&2; exit 2 ;;
esac
