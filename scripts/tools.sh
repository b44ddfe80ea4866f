#!/usr/bin/env bash
# Installs the external tools the tests and benchmarks use, once, into a cache shared by every
# clone on this machine. Idempotent and quiet when everything is already there.
#   scripts/tools.sh [ferretdb] [grpcurl] [ghz]     (no argument = these three)
#   scripts/tools.sh protoc-gen-go protoc-gen-go-grpc   (the Go client's plugins, scripts/clients.sh)
# Prints nothing but errors when the tools are cached; prints the bin directory with --print-dir.
set -euo pipefail

TOOLS_DIR="${SESSION_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/session-service/bin}"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$TOOLS_DIR"; exit 0; fi
mkdir -p "$TOOLS_DIR"

declare -A MODULES=(
  [ferretdb]="github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2"
  [grpcurl]="github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3"
  [ghz]="github.com/bojand/ghz/cmd/ghz@v0.121.0"
  [protoc-gen-go]="google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
  [protoc-gen-go-grpc]="google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2"
)

wanted=("$@")
[[ ${#wanted[@]} -eq 0 ]] && wanted=(ferretdb grpcurl ghz)

for tool in "${wanted[@]}"; do
  module="${MODULES[$tool]:-}"
  [[ -n "$module" ]] || { echo "tools.sh: unknown tool '$tool'" >&2; exit 2; }
  stamp="$TOOLS_DIR/.$tool.version"
  if [[ -x "$TOOLS_DIR/$tool" && "$(cat "$stamp" 2>/dev/null)" == "$module" ]]; then
    continue
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "tools.sh: '$tool' is needed but Go is not installed; install Go >= 1.22 (or set MONGODB_URI for the database)" >&2
    exit 1
  fi
  echo "tools.sh: building $tool ($module), once; later runs use the cache in $TOOLS_DIR" >&2
  GOBIN="$TOOLS_DIR" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install "$module" >&2
  echo "$module" > "$stamp"
done
