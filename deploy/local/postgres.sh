#!/usr/bin/env bash
# PostgreSQL from the machine's Debian binaries, in a folder of the project's own,
# listening on 127.0.0.1 only, with one database per service.
#
#   deploy/local/postgres.sh start|stop [fast|smart|immediate]|status|logs|wipe
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

start() {
  if is_running; then echo "postgres: already running on 127.0.0.1:$port"; return; fi
  mkdir -p "$home"
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$home" && chmod 700 "$home"
  if [[ ! -f $data/PG_VERSION ]]; then
    as_owner "$pgbin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$home/initdb.log" 2>&1 \
      || { cat "$home/initdb.log" >&2; exit 1; }
  fi
  local opts="-c listen_addresses=127.0.0.1 -p $port -k $home -c max_connections=300"
  if [[ ${TALLY_PG_FAST:-0} == 1 ]]; then opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"; fi
  as_owner "$pgbin/pg_ctl" -D "$data" -l "$logfile" -w -t 60 -o "$opts" start >/dev/null
  for db in "${databases[@]}"; do
    if ! as_owner "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "select 1 from pg_database where datname='$db'" postgres | grep -q 1; then
      as_owner "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "create database $db" postgres
    fi
  done
  echo "postgres: running on 127.0.0.1:$port (databases: ${databases[*]}), log $logfile"
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
  *) echo "usage: $0 start|stop [fast|smart|immediate]|status|logs|wipe" >&2; exit 2 ;;
esac
