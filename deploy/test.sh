#!/usr/bin/env bash
# Runs every test against real NATS and PostgreSQL, starting them where they are not
# running. Everything runs twice: on the NATS at 4222 (Debian's 2.9 here) and on a
# current server (2.15, from PyPI) at 4333.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/infra.sh
ensure_postgres
ensure_nats
ensure_current_nats
# The NATS users test (tests/it/nats_users.rs) starts a server of its own from this.
export CIRCLE_TEST_NATS_SERVER="${CIRCLE_TEST_NATS_SERVER:-$(current_nats_server)}"

# An admin connection: the tests create a database each, as its owner, and the services'
# runtime role (circle_service, LOGIN NOSUPERUSER NOBYPASSRLS) where missing.
export CIRCLE_TEST_DATABASE_URL="${CIRCLE_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
# cargo-nextest runs every test in a process of its own, which the telemetry tests
# need (each installs the process's OpenTelemetry providers and tracing subscriber):
# installed from crates.io where missing, never replaced by `cargo test`.
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest from crates.io (once)"
  cargo install cargo-nextest --locked
fi
run_tests() { cargo nextest run --no-fail-fast "$@"; }

# The end-to-end tests start the binaries as a user would; build them once here so
# those tests find them current instead of building them while other tests run.
say "building the binaries"
cargo build --workspace --bins
say "all tests against NATS at 127.0.0.1:4222"
CIRCLE_TEST_NATS_URL=nats://127.0.0.1:4222 run_tests --workspace
say "all tests again on the current NATS server (127.0.0.1:4333)"
# The fault-injection run starts NATS servers of its own and the proto contract check
# uses none (never the one named here): they ran in the first pass, and are not run
# again.
CIRCLE_TEST_NATS_URL=nats://127.0.0.1:4333 run_tests --workspace \
  -E 'not test(/circle_faults_kills_every_process|the_contract_check_passes/)'
