#!/usr/bin/env bash
# Installs what bench/proxy.sh needs: nginx (the backend and the reference
# proxy), wrk (HTTP/1.1 load) and h2load (h2c load), from Debian's packages.
# Idempotent: does nothing when /usr/sbin/nginx, wrk and h2load are all there.
# The system nginx service is never started: while apt runs, a policy-rc.d
# that denies every service start is in place (the previous one, if any, is
# put back afterwards).
set -euo pipefail

have_all() {
  [ -x /usr/sbin/nginx ] && command -v wrk >/dev/null 2>&1 && command -v h2load >/dev/null 2>&1
}
have_all && exit 0

fail() { echo "install-nginx: $*" >&2; exit 1; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else fail "not root and sudo is missing; cannot run: $*"
  fi
}
command -v apt-get >/dev/null 2>&1 || fail "apt-get not found (this script expects Debian or Ubuntu)"

policy=/usr/sbin/policy-rc.d
backup=
restore_policy() {
  if [ -n "$backup" ]; then
    as_root mv -f "$backup" "$policy"
  else
    as_root rm -f "$policy"
  fi
}
if [ -e "$policy" ]; then
  backup=$(as_root mktemp /usr/sbin/policy-rc.d.bench-backup.XXXXXX)
  as_root cp -p "$policy" "$backup"
fi
trap restore_policy EXIT
printf '#!/bin/sh\n# bench: do not start services while installing\nexit 101\n' \
  | as_root tee "$policy" >/dev/null
as_root chmod 755 "$policy"

echo "== apt-get update" >&2
as_root apt-get update -qq || fail "apt-get update failed"

# nginx-light is the small build (it has the http2 and upstream keepalive
# modules bench/proxy.sh uses); fall back to nginx where it does not exist.
# (On bookworm nginx-light is a small wrapper around the nginx package.)
nginx_pkg=nginx
light_policy=$(apt-cache policy nginx-light 2>/dev/null || true)
if [[ $light_policy == *"Candidate: "[0-9]* ]]; then
  nginx_pkg=nginx-light
fi
pkgs=("$nginx_pkg" wrk nghttp2-client)
echo "== installing ${pkgs[*]}" >&2
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null \
  || fail "apt-get install ${pkgs[*]} failed"

have_all || fail "installed ${pkgs[*]} but /usr/sbin/nginx, wrk or h2load is still missing"
echo "== nginx, wrk and h2load installed ($(/usr/sbin/nginx -v 2>&1))" >&2
