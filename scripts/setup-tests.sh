#!/usr/bin/env bash
# Installs what the tests need beyond Rust, from Debian's packages, npm and PyPI.
# Idempotent: does nothing when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
need_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  echo "== installing ${missing[*]} (Debian)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# curl is a real HTTP/1.1 and HTTP/2 client in the recording proxy's tests.
command -v curl >/dev/null || need_packages curl

# GNU time measures `reprise ls`'s peak memory on crafted tapes.
[ -x /usr/bin/time ] || need_packages time

# npm fetches the third-party HAR files the interop tests import.
command -v npm >/dev/null || need_packages nodejs npm
scripts/fetch-har-examples.sh

# undici (MIT), from npm, is the HTTP client of the Node.js service in the
# egress tests (crates/cli/tests/egress_node.rs): its EnvHttpProxyAgent
# honours HTTP_PROXY, HTTPS_PROXY and NO_PROXY, which Node 20's built-in
# clients do not. Unpacked into target/undici/node_modules (no
# dependencies of its own); a pinned version, the last for Node 20.
undici_version=7.30.3
undici_dir=target/undici/node_modules/undici
if ! grep -qs "\"version\": \"$undici_version\"" "$undici_dir/package.json"; then
  echo "== fetching undici $undici_version (npm)"
  rm -rf "$undici_dir"
  mkdir -p "$undici_dir"
  tarball=$(cd target/undici && npm pack --silent "undici@$undici_version" | tail -n 1)
  tar -xzf "target/undici/$tarball" -C "$undici_dir" --strip-components=1
  rm -f "target/undici/$tarball"
fi

# httpbin (with gunicorn), from PyPI, is a third-party service the
# comparison's noise-cancellation test records and replays.
if ! python3 -c 'import httpbin, gunicorn' >/dev/null 2>&1; then
  echo "== installing httpbin and gunicorn (PyPI)"
  if [ "$(id -u)" -eq 0 ]; then
    python3 -m pip install -q --root-user-action=ignore httpbin gunicorn
  else
    python3 -m pip install -q --user httpbin gunicorn
  fi
fi

# requests and grpcio, from PyPI, are the clients of the Python shop
# (examples/python-shop) that the `reprise test` sandbox tests run.
if ! python3 -c 'import requests, grpc' >/dev/null 2>&1; then
  echo "== installing requests and grpcio (PyPI)"
  if [ "$(id -u)" -eq 0 ]; then
    python3 -m pip install -q --root-user-action=ignore requests grpcio
  else
    python3 -m pip install -q --user requests grpcio
  fi
fi

# PostgreSQL and Redis are the real databases of the `--egress-db` tests
# (crates/testkit's `postgres` and `redis` modules start them on
# 127.0.0.1); haproxy is the reference TCP relay their benchmark measures
# the recording proxy against.
need_packages postgresql redis-server redis-tools haproxy

# psycopg (3) and redis-py, from PyPI, are the clients of the Python
# ledger (examples/python-ledger) the database tests record and replay.
if ! python3 -c 'import psycopg, redis' >/dev/null 2>&1; then
  echo "== installing psycopg and redis (PyPI)"
  if [ "$(id -u)" -eq 0 ]; then
    python3 -m pip install -q --root-user-action=ignore 'psycopg[binary]' redis
  else
    python3 -m pip install -q --user 'psycopg[binary]' redis
  fi
fi

# Headless Chromium renders the HTML diff report in its test.
command -v chromium >/dev/null || need_packages chromium

# The sandbox of `reprise test` (crates/sandbox): nft loads its firewall in
# the service's network namespace, ip brings up its loopback, libfaketime
# moves a service's clock, setpriv (util-linux) runs a test as nobody.
need_packages nftables iproute2 faketime util-linux

# nginx is a third-party upstream in the recording proxy's tests.
scripts/install-nginx.sh
