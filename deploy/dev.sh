#!/usr/bin/env bash
# Brings up the whole system with demo data: PostgreSQL and NATS (installed and
# started where missing), then `circle dev` — every service in one process, the demo
# network seeded, gRPC addresses printed. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/infra.sh
ensure_postgres
ensure_nats
exec cargo run --quiet -p circle-cli --bin circle -- dev "$@"
