#!/usr/bin/env bash
# `buf breaking`: the protos (every API and every event contract) checked against the
# last release's, kept as an image in deploy/proto-released.binpb, so no change breaks
# a client of an API or a reader of an event written before it (buf's FILE rules:
# no field, message, enum value, RPC or file removed, renumbered, retyped or renamed).
#
#   bash deploy/buf-breaking.sh            the repository's protos
#   bash deploy/buf-breaking.sh DIR        a copy (DIR holds buf.yaml and proto/)
#   bash deploy/buf-breaking.sh --release  make the current protos the release
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
baseline="$root/deploy/proto-released.binpb"
if [ "${1:-}" = "--release" ]; then
  cd "$root"
  exec bash deploy/buf.sh build -o "$baseline"
fi
input="$(cd "${1:-$root}" && pwd)"
exec bash "$root/deploy/buf.sh" breaking "$input" --against "$baseline"
