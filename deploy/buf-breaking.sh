#!/usr/bin/env bash
# `buf breaking`: the protos (every API and every event contract) checked against the
# last release's, kept as a readable image in deploy/proto-released.json (indented, so
# a change to it shows in review), so no change breaks a client of an API or a reader
# of an event written before it. buf's FILE rules: no field, message, enum value, RPC
# or file removed, renumbered, retyped or renamed (events are found by their full type
# name, which WIRE rules would let change); a field is retired by `deprecated`, never
# removed.
#
#   bash deploy/buf-breaking.sh            the repository's protos
#   bash deploy/buf-breaking.sh DIR        a copy (DIR holds buf.yaml and proto/)
#   bash deploy/buf-breaking.sh --release  make the current protos the release
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
baseline="$root/deploy/proto-released.json"
if [ "${1:-}" = "--release" ]; then
  built="$(mktemp)"
  trap 'rm -f "$built"' EXIT
  bash "$root/deploy/buf.sh" build --exclude-source-info -o "$built#format=json"
  python3 -c 'import json, sys
image = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write(json.dumps(image, indent=1, sort_keys=True) + "\n")' "$built" "$baseline"
  exit 0
fi
input="$(cd "${1:-$root}" && pwd)"
exec bash "$root/deploy/buf.sh" breaking "$input" --against "$baseline"
