#!/usr/bin/env bash
# Brings up the whole system with demo data: PostgreSQL and NATS (installed and
# started where missing), then `circle dev` — every service in one process, the demo
# network seeded, gRPC addresses printed. Ctrl-C stops it. `circle dev` also creates the
# database and the services' runtime role (circle_service, LOGIN NOSUPERUSER NOBYPASSRLS)
# where missing, as the owner (database.owner_url); see README, Configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/infra.sh
ensure_postgres
ensure_nats
exec cargo run --quiet -p circle-cli --bin circle -- dev "$@"
