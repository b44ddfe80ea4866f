#!/usr/bin/env bash
# Runs a private FerretDB (SQLite backend by default) for tests and benchmarks, all state inside one
# directory.
#   scripts/ferretdb.sh start DIR [PORT]   start (or find running) FerretDB; prints its mongodb:// URI
#   scripts/ferretdb.sh stop DIR           stop it (no-op when it is not running)
#   scripts/ferretdb.sh uri DIR            print the URI of the running instance, fail if none
# DIR holds the SQLite files, FerretDB's state, ferretdb.log, ferretdb.pid and ferretdb.port.
# Without PORT a free loopback port is picked; with PORT (a restart) that port is reused.
# FERRETDB_OWNER_PID=PID (optional): stop FerretDB when that process exits (see watch_owner).
# FERRETDB_STOCK=1 (optional): run FerretDB exactly as `go install` builds it, without the one-line
#   `_id` index patch (see patched_binary); much slower on large collections.
# FERRETDB_SYNCHRONOUS=NORMAL|FULL|OFF (optional, default NORMAL): SQLite's synchronous pragma
#   (see start). FULL is SQLite's and FerretDB's own default.
# FERRETDB_HANDLER=postgresql (optional, default sqlite) with FERRETDB_POSTGRESQL_URL=postgres://...
#   (e.g. from scripts/postgres.sh): run FerretDB's PostgreSQL backend on that database instead of
#   SQLite files in DIR (DIR still holds the state, log, pid and port). It runs the stock binary
#   (the `_id` patch is SQLite-only); FERRETDB_SYNCHRONOUS does not apply. FerretDB also reads its
#   own FERRETDB_* variables, e.g. FERRETDB_TEST_ENABLE_NESTED_PUSHDOWN=true (see docs/performance.md).
# Idempotent and quiet: prints only the URI, and errors on stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "ferretdb.sh: $*" >&2; exit 1; }
usage() { echo "usage: scripts/ferretdb.sh start DIR [PORT] | stop DIR | uri DIR" >&2; exit 2; }

cmd="${1:-}"; dir_arg="${2:-}"; port_arg="${3:-}"
[[ -n "$cmd" && -n "$dir_arg" ]] || usage

# The binary: the `go install` build of scripts/tools.sh (cached in the shared tool cache), from
# whose module source a patched copy is built once next to it (patched_binary). FERRETDB_STOCK=1
# uses the `go install` build itself.
ferretdb_bin() {
  local tools_dir bin
  tools_dir="$("$here/tools.sh" --print-dir)"
  bin="$tools_dir/ferretdb"
  if [[ ! -x "$bin" ]] && ! command -v go >/dev/null 2>&1; then
    die "FerretDB is not built yet and Go is not installed. Install Go >= 1.22 (https://go.dev/dl/) so that scripts/tools.sh can build FerretDB, or point the tests at an existing MongoDB server with MONGODB_URI=mongodb://HOST:PORT/"
  fi
  "$here/tools.sh" ferretdb >/dev/null || die "building FerretDB with scripts/tools.sh failed (see above)"
  if [[ "${FERRETDB_STOCK:-}" == 1 ]]; then
    if ! "$bin" --version >/dev/null 2>&1; then
      repair_binary "$tools_dir" "$bin"
    fi
    echo "$bin"
  else
    patched_binary "$tools_dir"
  fi
}

# Copies the FerretDB module source of the cached version into a new directory (printed), with
# build/version/version.txt written: `go install module@version` builds FerretDB without that
# generated file (it is not part of the module zip), and such a binary panics at start-up with
# "Invalid build/version/version.txt file content".
module_source() {
  local tools_dir="$1" module version src work
  command -v go >/dev/null 2>&1 || die "building FerretDB from source needs Go; install Go >= 1.22 (https://go.dev/dl/), or set MONGODB_URI"
  module="$(cat "$tools_dir/.ferretdb.version")"            # github.com/FerretDB/FerretDB/cmd/ferretdb@vX.Y.Z
  version="${module##*@}"
  src="$(go mod download -json "github.com/FerretDB/FerretDB@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$src" ]] || die "could not find the FerretDB $version module source"
  work="$(mktemp -d)"
  cp -R "$src/." "$work/"
  chmod -R u+w "$work"
  echo "$version" > "$work/build/version/version.txt"
  echo "$work"
}

# Builds ./cmd/ferretdb in source directory $1 into $2, atomically (same path for every caller);
# removes the source directory.
build_into() {
  local work="$1" out="$2"
  if ! (cd "$work" && GOFLAGS="${GOFLAGS:-} -buildvcs=false" go build -o "$out.tmp.$$" ./cmd/ferretdb >&2); then
    rm -rf "$work" "$out.tmp.$$"
    die "building FerretDB failed"
  fi
  rm -rf "$work"
  mv -f "$out.tmp.$$" "$out"
  "$out" --version >/dev/null 2>&1 || die "$out does not run; see: $out --version"
}

# The stock binary without its version file: rebuild it once from the same module source (same
# version, same path).
repair_binary() {
  local tools_dir="$1" bin="$2" work
  echo "ferretdb.sh: rebuilding $bin with its version file, once" >&2
  work="$(module_source "$tools_dir")"
  build_into "$work" "$bin"
}

# FerretDB v1.24's SQLite backend creates each collection's unique `_id` index on the expression
# `_ferretdb_sjson->"_id"` but finds, updates and deletes by `_id` with
# `WHERE _ferretdb_sjson->'$._id' = ?`. Both expressions give the same value for every document
# (SQLite reads a label X as the path '$.X'), but SQLite matches an expression index by the
# expression's text, so it never uses that index: every `{_id: ...}` lookup scans the whole table
# and parses each row's JSON (`explain` shows SCAN), and the cost of a lookup grows with the
# collection. The patch changes that one constant (metadata.IDColumn) to the index's own
# expression; the tables, indexes and files are unchanged, and so is every result. Built once
# into the tool cache as ferretdb-VERSION-idindex. See docs/mongodb.md.
PATCH_FILE="internal/backends/sqlite/metadata/metadata.go"
PATCH_FROM="IDColumn = DefaultColumn + \"->'\$._id'\""
PATCH_TO='IDColumn = DefaultColumn + `->"_id"`'

patched_binary() {
  local tools_dir="$1" version bin work content
  version="$(cat "$tools_dir/.ferretdb.version")"; version="${version##*@}"
  bin="$tools_dir/ferretdb-$version-idindex"
  if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
    echo "$bin"
    return
  fi
  echo "ferretdb.sh: building $bin (FerretDB $version with the _id index patch), once" >&2
  work="$(module_source "$tools_dir")"
  content="$(cat "$work/$PATCH_FILE")"
  if [[ "$content" != *"$PATCH_FROM"* ]]; then
    rm -rf "$work"
    die "FerretDB $version: $PATCH_FILE has no line '$PATCH_FROM' to patch; update patched_binary in scripts/ferretdb.sh, or set FERRETDB_STOCK=1"
  fi
  printf '%s\n' "${content/"$PATCH_FROM"/"$PATCH_TO"}" > "$work/$PATCH_FILE"
  build_into "$work" "$bin"
  echo "$bin"
}

# Alive and not a zombie (a child that died is a zombie until waited for).
alive() {
  local stat
  stat="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ -n "$stat" && "$stat" != Z* ]]
}

# The pid in DIR/ferretdb.pid if that process is alive and is the FerretDB of DIR.
running_pid() {
  local pid
  pid="$(cat "$dir/ferretdb.pid" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  ps -o args= -p "$pid" 2>/dev/null | grep -q -F -- "--state-dir=$dir" || return 1
  echo "$pid"
}

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

uri_of() { echo "mongodb://127.0.0.1:$1/"; }

# With FERRETDB_OWNER_PID set (the test runner's pid), FerretDB is stopped when that process
# is gone, so a killed test run leaves no database running.
watch_owner() {
  local pid="$1" owner="${FERRETDB_OWNER_PID:-}"
  [[ "$owner" =~ ^[0-9]+$ ]] || return 0
  (
    while alive "$owner" && alive "$pid"; do sleep 2; done
    if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  ) </dev/null >/dev/null 2>&1 &
  disown 2>/dev/null || true
}

start() {
  local bin pid port attempt logged sync
  mkdir -p "$dir"
  if pid="$(running_pid)"; then
    port="$(cat "$dir/ferretdb.port")"
    [[ -z "$port_arg" || "$port_arg" == "$port" ]] || die "already running in $dir on port $port, not $port_arg"
    uri_of "$port"
    return
  fi
  rm -f "$dir/ferretdb.pid" "$dir/ferretdb.port"
  # SQLite's synchronous pragma, on top of FerretDB's defaults (WAL journal, busy_timeout 10 s).
  # NORMAL in WAL mode syncs the WAL at checkpoints instead of at every commit: a committed write
  # survives the FerretDB process being killed or stopped (it is in the OS's page cache), and only
  # an OS crash or power loss can undo the last commits. That is enough for this private test and
  # benchmark database, and it removes most fsync calls. See docs/mongodb.md.
  sync="${FERRETDB_SYNCHRONOUS:-NORMAL}"
  [[ "$sync" =~ ^(NORMAL|FULL|OFF)$ ]] || die "FERRETDB_SYNCHRONOUS must be NORMAL, FULL or OFF, not '$sync'"
  local -a backend
  case "${FERRETDB_HANDLER:-sqlite}" in
    sqlite)
      backend=(--handler=sqlite "--sqlite-url=file:$dir/?_pragma=synchronous($sync)")
      bin="$(ferretdb_bin)" ;;
    postgresql)
      [[ "${FERRETDB_POSTGRESQL_URL:-}" == postgres://* || "${FERRETDB_POSTGRESQL_URL:-}" == postgresql://* ]] \
        || die "FERRETDB_HANDLER=postgresql needs FERRETDB_POSTGRESQL_URL=postgres://... (see scripts/postgres.sh)"
      backend=(--handler=postgresql "--postgresql-url=$FERRETDB_POSTGRESQL_URL")
      bin="$(FERRETDB_STOCK=1 ferretdb_bin)" ;;
    *) die "FERRETDB_HANDLER must be sqlite or postgresql, not '$FERRETDB_HANDLER'" ;;
  esac
  for attempt in 1 2 3 4 5; do
    port="${port_arg:-$(free_port)}"
    logged=0; [[ -f "$dir/ferretdb.log" ]] && logged="$(wc -c < "$dir/ferretdb.log")"
    # DO_NOT_TRACK as well as --telemetry=disable; --debug-addr=- turns off the HTTP debug
    # listener, an empty --otel-traces-url (the default) sends no traces, no unix/TLS listeners.
    DO_NOT_TRACK=1 "$bin" \
      "${backend[@]}" --state-dir="$dir" \
      --listen-addr="127.0.0.1:$port" --listen-unix= --listen-tls= \
      --debug-addr=- --telemetry=disable --otel-traces-url= \
      --log-format=text --log-level=info \
      </dev/null >>"$dir/ferretdb.log" 2>&1 &
    pid=$!
    # Wait until this process says it listens (the port alone could be answered by another
    # process) and the port accepts connections, or until it has died (port taken meanwhile).
    for _ in $(seq 1 600); do
      alive "$pid" || break
      if tail -c "+$((logged + 1))" "$dir/ferretdb.log" | grep -q -F "Listening on TCP 127.0.0.1:$port..." \
        && accepts "$port"; then
        echo "$pid" > "$dir/ferretdb.pid"
        echo "$port" > "$dir/ferretdb.port"
        watch_owner "$pid"
        uri_of "$port"
        return
      fi
      sleep 0.05
    done
    if alive "$pid"; then
      kill "$pid" 2>/dev/null || true
      die "FerretDB did not accept connections on port $port within 30 s; see $dir/ferretdb.log"
    fi
    wait "$pid" 2>/dev/null || true
    # A fixed port cannot change: it may still be held by the previous process for a moment,
    # so retry it a few times; a picked port is simply picked again.
    [[ -n "$port_arg" ]] && sleep 0.2
  done
  die "FerretDB failed to start ($attempt attempts); see $dir/ferretdb.log"
}

stop() {
  local pid
  [[ -d "$dir" ]] || return 0
  if pid="$(running_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do
      alive "$pid" || break
      sleep 0.05
    done
    if alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.05; done
    fi
  fi
  rm -f "$dir/ferretdb.pid"
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
  uri)
    dir="$(cd "$dir_arg" && pwd)"
    running_pid >/dev/null || die "no FerretDB running in $dir"
    uri_of "$(cat "$dir/ferretdb.port")" ;;
  *) usage ;;
esac
