#!/usr/bin/env bash
# The example clients in other languages (examples/python, examples/go): their tools, their
# generated code and their runs. Idempotent, cached between runs, quiet when everything is there.
#   scripts/clients.sh setup [python|go]     install what the clients need (no argument = both)
#   scripts/clients.sh generate [ROOT]       regenerate examples/{python,go}/gen under ROOT
#                                            (default: this repository; the tests use a temp dir)
#   scripts/clients.sh python [OPTIONS] HOST:PORT   run the Python scenario against a server's gRPC port
#   scripts/clients.sh go [OPTIONS] HOST:PORT       run the Go scenario against a server's gRPC port
#       OPTIONS: --cacert FILE            TLS, trusting the CA that signed the server's certificate
#                --cert FILE --key FILE   a client certificate (mTLS)
#                --api-key SECRET         an API key (better: SESSION_API_KEY in the environment,
#                                         which other users cannot read in the process list)
#   scripts/clients.sh --python              print the path of the Python interpreter it uses
#   scripts/clients.sh history HOST:PORT,... [ARGS]   run the WatchSessions history checker
#                                            (test/python/history_check.py, --help for ARGS)
#
# Python: a virtualenv in the tool cache (next to scripts/tools.sh's bin directory) with pinned
# grpcio, grpcio-tools (protoc and the gRPC plugin, `python -m grpc_tools.protoc`) and grpcio-status.
# Go: protoc-gen-go and protoc-gen-go-grpc, pinned, built by scripts/tools.sh into its cache, run
# by buf (npm devDependency) as local plugins (examples/go/buf.gen.yaml); the Go module's own
# dependencies come through the Go module proxy (examples/go/go.mod, go.sum).
# The generated code is committed; test/e2e/clients.test.ts checks it equals a fresh generation.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "clients.sh: $*" >&2; exit 1; }

TOOLS_DIR="$("$root/scripts/tools.sh" --print-dir)"
VENV="$(dirname "$TOOLS_DIR")/python"
PYTHON="$VENV/bin/python"
# Pinned in examples/python/requirements.txt (the generated code names these versions).
REQUIREMENTS="$root/examples/python/requirements.txt"

setup_python() {
  local stamp="$VENV/.requirements" want
  want="$(cat "$REQUIREMENTS")"
  if [[ -x "$PYTHON" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then return; fi
  local py
  py="$(command -v python3 || true)"
  [[ -n "$py" ]] || die "Python 3 is needed for the Python client; install python3 (>= 3.9) with its venv module"
  echo "clients.sh: installing examples/python/requirements.txt into $VENV, once" >&2
  rm -rf "$VENV"
  "$py" -m venv "$VENV" >&2 || die "could not create a virtualenv in $VENV (on Debian: apt-get install python3-venv)"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS" >&2 \
    || die "pip could not install examples/python/requirements.txt"
  echo "$want" > "$stamp"
}

setup_go() {
  command -v go >/dev/null 2>&1 || die "Go is needed for the Go client; install Go >= 1.26"
  "$root/scripts/tools.sh" protoc-gen-go protoc-gen-go-grpc
}

# Runs `python -m grpc_tools.protoc` on proto/ into $1/examples/python/gen.
generate_python() {
  local out="$1/examples/python/gen" wkt
  wkt="$("$PYTHON" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
  rm -rf "$out" && mkdir -p "$out"
  (cd "$root/proto" && "$PYTHON" -m grpc_tools.protoc -I . -I "$wkt" \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    $(find session -name '*.proto' | LC_ALL=C sort))
}

# Runs buf with the local Go plugins (examples/go/buf.gen.yaml) into $1/examples/go/gen.
generate_go() {
  local base="$1"
  rm -rf "$base/examples/go/gen"
  (cd "$root" && PATH="$TOOLS_DIR:$PATH" node_modules/.bin/buf generate --template examples/go/buf.gen.yaml -o "$base")
}

# Runs "$@" holding the cache's lock, so that concurrent runs (parallel tests) install once.
locked() {
  local lock
  lock="$(dirname "$TOOLS_DIR")/.clients.lock"
  mkdir -p "$(dirname "$lock")"
  { flock 9; "$@"; } 9>"$lock"
}

# The client options with their file paths made absolute (the Go client runs in examples/go),
# into the array CLIENT_ARGS; the HOST:PORT must come last.
client_args() {
  CLIENT_ARGS=()
  while [[ $# -gt 1 ]]; do
    case "$1" in
      --cacert|--cert|--key)
        [[ -f "$2" ]] || die "$1 $2: no such file"
        CLIENT_ARGS+=("$1" "$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"); shift 2 ;;
      --api-key) CLIENT_ARGS+=("$1" "$2"); shift 2 ;;
      *) die "unknown option '$1' (options: --cacert FILE, --cert FILE, --key FILE, --api-key SECRET; HOST:PORT last)" ;;
    esac
  done
  [[ $# -eq 1 && "$1" != -* ]] || die "usage: scripts/clients.sh python|go [OPTIONS] HOST:PORT"
  CLIENT_ARGS+=("$1")
}

cmd="${1:-}"
case "$cmd" in
  setup)
    case "${2:-all}" in
      python) locked setup_python ;;
      go) locked setup_go ;;
      all) locked setup_python; locked setup_go ;;
      *) die "unknown client '${2}'" ;;
    esac ;;
  generate)
    base="${2:-$root}"
    mkdir -p "$base"; base="$(cd "$base" && pwd)"
    locked setup_python; locked setup_go
    generate_python "$base"
    generate_go "$base" ;;
  python)
    shift; client_args "$@"
    locked setup_python
    export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in examples/python/gen
    exec "$PYTHON" "$root/examples/python/client.py" "${CLIENT_ARGS[@]}" ;;
  go)
    shift; client_args "$@"
    command -v go >/dev/null 2>&1 || die "Go is needed for the Go client; install Go >= 1.26"
    cd "$root/examples/go"
    export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
    exec go run . "${CLIENT_ARGS[@]}" ;;
  history)
    [[ -n "${2:-}" ]] || die "usage: scripts/clients.sh history HOST:PORT,HOST:PORT [ARGS]"
    locked setup_python
    export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in examples/python/gen
    shift
    exec "$PYTHON" "$root/test/python/history_check.py" "$@" ;;
  --python)
    locked setup_python
    echo "$PYTHON" ;;
  *)
    echo "usage: scripts/clients.sh setup [python|go] | generate [ROOT] | python [OPTIONS] HOST:PORT | go [OPTIONS] HOST:PORT | history HOST:PORT,... [ARGS] | --python" >&2
    exit 2 ;;
esac
