#!/usr/bin/env bash
# Runs buf (npm package @bufbuild/buf), installing it into a cache folder on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
# The version is in the cache folder's name, so a new pin is installed, not an older
# buf found in the cache used.
version=1.75.0
tools="${XDG_CACHE_HOME:-$HOME/.cache}/circle/buf-$version"
if [ ! -x "$tools/node_modules/.bin/buf" ]; then
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent "@bufbuild/buf@$version" >/dev/null
fi
exec "$tools/node_modules/.bin/buf" "$@"
