#!/usr/bin/env bash
# Runs a private PostgreSQL (for FerretDB's postgresql handler in benchmarks), all state inside one
# directory, reachable on loopback only.
#   scripts/postgres.sh start DIR [PORT]   start (or find running) PostgreSQL; prints its postgres:// URL
#   scripts/postgres.sh stop DIR           stop it (no-op when it is not running)
#   scripts/postgres.sh url DIR            print the URL of the running instance, fail if none
# DIR holds the cluster (DIR/data, created by initdb on the first start), postgres.log and
# postgres.port. Without PORT a free loopback port is picked; with PORT that port is reused.
# The URL names database `ferretdb` (created on the first start), user `postgres`.
# Listens on 127.0.0.1 only, no Unix socket, trust authentication for 127.0.0.1/32 only (like the
# FerretDB of scripts/ferretdb.sh, which has no authentication either): a test database.
# PostgreSQL refuses to run as root: run as root, the server runs as the `postgres` user
# (POSTGRES_RUN_AS=USER to choose another), which owns DIR and must be able to reach it.
# POSTGRES_SYNCHRONOUS_COMMIT=on|off (optional, default off): off acknowledges a commit before its
#   WAL reaches the disk; only a crash of PostgreSQL or the OS can lose the last ~0.6 s of commits,
#   never corrupt the database. `on` is PostgreSQL's default.
# Needs initdb, pg_ctl and postgres (PostgreSQL >= 13) on PATH or in POSTGRES_BIN.
# Idempotent and quiet: prints only the URL, and errors on stderr.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }
usage() { echo "usage: scripts/postgres.sh start DIR [PORT] | stop DIR | url DIR" >&2; exit 2; }

cmd="${1:-}"; dir_arg="${2:-}"; port_arg="${3:-}"
[[ -n "$cmd" && -n "$dir_arg" ]] || usage

bin() {
  local b="${POSTGRES_BIN:+$POSTGRES_BIN/}$1"
  if [[ -n "${POSTGRES_BIN:-}" ]]; then [[ -x "$b" ]] || die "no $b"; echo "$b"; return; fi
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: install PostgreSQL (>= 13) or set POSTGRES_BIN"
  command -v "$1"
}

# Runs a command as the cluster's owner (the `postgres` user when we are root).
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u "${POSTGRES_RUN_AS:-postgres}" -- "$@"
  else
    "$@"
  fi
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

url_of() { echo "postgres://postgres@127.0.0.1:$1/ferretdb"; }

# pg_ctl status exits 0 when the postmaster of DIR/data runs.
running() { [[ -f "$dir/data/postmaster.pid" ]] && as_owner "$(bin pg_ctl)" status -D "$dir/data" >/dev/null 2>&1; }

init() {
  [[ -f "$dir/data/PG_VERSION" ]] && return
  if [[ "$(id -u)" == 0 ]]; then
    chown "${POSTGRES_RUN_AS:-postgres}:" "$dir"
    as_owner test -x "$dir" || die "user ${POSTGRES_RUN_AS:-postgres} cannot reach $dir (a parent directory is not searchable)"
  fi
  rm -rf "$dir/data"
  # --no-sync: a fresh test cluster need not be fsynced; the superuser is `postgres`.
  as_owner "$(bin initdb)" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    --no-sync >"$dir/initdb.log" 2>&1 || die "initdb failed; see $dir/initdb.log"
  # Loopback TCP only: no Unix socket, trust for 127.0.0.1 and nothing else.
  printf '%s\n' "host all all 127.0.0.1/32 trust" > "$dir/data/pg_hba.conf"
  cat >> "$dir/data/postgresql.conf" <<'EOF'

# scripts/postgres.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
shared_buffers = 512MB
max_wal_size = 4GB
checkpoint_timeout = 15min
logging_collector = off
log_min_messages = warning
EOF
}

start() {
  local port sc attempt
  mkdir -p "$dir"
  if running; then
    port="$(cat "$dir/postgres.port")"
    [[ -z "$port_arg" || "$port_arg" == "$port" ]] || die "already running in $dir on port $port, not $port_arg"
    url_of "$port"
    return
  fi
  sc="${POSTGRES_SYNCHRONOUS_COMMIT:-off}"
  [[ "$sc" =~ ^(on|off)$ ]] || die "POSTGRES_SYNCHRONOUS_COMMIT must be on or off, not '$sc'"
  init
  rm -f "$dir/postgres.port"
  touch "$dir/postgres.log"
  [[ "$(id -u)" == 0 ]] && chown "${POSTGRES_RUN_AS:-postgres}:" "$dir/postgres.log"
  for attempt in 1 2 3 4 5; do
    port="${port_arg:-$(free_port)}"
    # -w: wait until it accepts connections (pg_ctl checks over TCP, as there is no socket).
    if as_owner "$(bin pg_ctl)" start -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -s \
      -o "-p $port -c synchronous_commit=$sc" </dev/null >/dev/null 2>&1; then
      echo "$port" > "$dir/postgres.port"
      if ! as_owner "$(bin psql)" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'" | grep -q 1; then
        as_owner "$(bin psql)" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
          -c "CREATE DATABASE ferretdb" >/dev/null || die "could not create database ferretdb"
      fi
      url_of "$port"
      return
    fi
    running && { as_owner "$(bin pg_ctl)" stop -D "$dir/data" -m immediate -s >/dev/null 2>&1 || true; }
    [[ -n "$port_arg" ]] && sleep 0.5
  done
  die "PostgreSQL failed to start ($attempt attempts); see $dir/postgres.log"
}

stop() {
  running || { rm -f "$dir/postgres.port"; return 0; }
  # fast: disconnect clients, checkpoint, exit (a clean shutdown).
  as_owner "$(bin pg_ctl)" stop -D "$dir/data" -m fast -w -t 60 -s >/dev/null 2>&1 \
    || as_owner "$(bin pg_ctl)" stop -D "$dir/data" -m immediate -w -s >/dev/null 2>&1 || true
  rm -f "$dir/postgres.port"
}

case "$cmd" in
  start)
    [[ -z "$port_arg" || "$port_arg" =~ ^[0-9]+$ ]] || usage
    mkdir -p "$dir_arg"; dir="$(cd "$dir_arg" && pwd)"
    start ;;
  stop)
    [[ -d "$dir_arg" ]] || exit 0
    dir="$(cd "$dir_arg" && pwd)"
    stop ;;
  url)
    dir="$(cd "$dir_arg" && pwd)"
    running || die "no PostgreSQL running in $dir"
    url_of "$(cat "$dir/postgres.port")" ;;
  *) usage ;;
esac
