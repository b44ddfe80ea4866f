#!/usr/bin/env bash
# Writes the FileDescriptorSet that gRPC server reflection serves (src/rpc/reflection.ts), WITH
# source info, so `grpcurl describe` shows the proto comments:
#   scripts/descriptors.sh [OUT]        (default gen/descriptors.binpb; run by `npm run generate`)
# It holds proto/ and everything a client may need to resolve through reflection: the imported
# well-known types, google/rpc/status.proto and error_details.proto (error details), and the
# health and reflection services, whose .proto files come from npm packages (grpc-health-check,
# @grpc/reflection) under their canonical names. The output is deterministic; the contract test
# checks that the committed file equals a fresh one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/gen/descriptors.binpb}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
nm="$root/node_modules"
put() { mkdir -p "$stage/$(dirname "$2")"; cp "$1" "$stage/$2"; }

cp -R "$root/proto/." "$stage/"
put "$nm/google-proto-files/google/rpc/status.proto" google/rpc/status.proto
put "$nm/google-proto-files/google/rpc/error_details.proto" google/rpc/error_details.proto
put "$nm/grpc-health-check/proto/health/v1/health.proto" grpc/health/v1/health.proto
put "$nm/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto" grpc/reflection/v1/reflection.proto
put "$nm/@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto" grpc/reflection/v1alpha/reflection.proto

mkdir -p "$(dirname "$out")"
# The stage has no buf.yaml, so buf builds it as one module; imports (the well-known types) are
# included, with their source info.
(cd "$stage" && "$nm/.bin/buf" build . --as-file-descriptor-set -o "$out.tmp.$$")
mv -f "$out.tmp.$$" "$out"
