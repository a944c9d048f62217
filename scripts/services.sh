#!/usr/bin/env bash
# Make sure PostgreSQL 15, Redis, Chromium and nginx (the proxy tests and the
# benchmark run Debian's nginx with deploy/nginx/chat.conf) are installed and running on
# loopback (a fresh machine runs nothing), and the SSO tests' identity provider is
# installed. Needs root; idempotent.
set -euo pipefail

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v redis-server >/dev/null || apt_install redis-server
[ -x /usr/bin/chromium ] || apt_install chromium
command -v pg_ctlcluster >/dev/null || apt_install postgresql
[ -x /usr/sbin/nginx ] || apt_install nginx
command -v node >/dev/null || apt_install nodejs npm

# The SSO tests' identity provider (oidc-provider from the npm registry, pinned by
# tests/oidc/package-lock.json), installed once into tests/oidc/node_modules: the
# tests never download anything.
oidc_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/oidc"
if [ ! -f "$oidc_dir/node_modules/.package-lock.json" ] \
  || [ "$oidc_dir/package-lock.json" -nt "$oidc_dir/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$oidc_dir" --no-audit --no-fund --loglevel=error >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster 15 main start
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
# axe-core, for the accessibility checks of the browser tests: the tests inject it
# into the page themselves; the app never serves it. Installed once into a cache.
AXE_CORE_DIR=${AXE_CORE_DIR:-/var/cache/chatplatform/axe-core}
AXE_CORE_VERSION=4.10.2
if [ ! -f "$AXE_CORE_DIR/node_modules/axe-core/axe.min.js" ]; then
  command -v npm >/dev/null || apt_install npm
  mkdir -p "$AXE_CORE_DIR"
  npm install --prefix "$AXE_CORE_DIR" --no-save --no-audit --no-fund --loglevel=error "axe-core@$AXE_CORE_VERSION" >/dev/null
fi

echo "services: postgresql $(pg_isready -h 127.0.0.1 -p 5432 | cut -d- -f2-), redis $(redis-cli ping), chromium $([ -x /usr/bin/chromium ] && echo ok), nginx $([ -x /usr/sbin/nginx ] && echo ok), oidc-provider $(node -p "require('$oidc_dir/node_modules/oidc-provider/package.json').version"), axe-core $([ -f "$AXE_CORE_DIR/node_modules/axe-core/axe.min.js" ] && echo ok)"
