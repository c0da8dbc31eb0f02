#!/usr/bin/env bash
# Start what the test suite needs besides Python: the machine's PostgreSQL 15 server (Debian
# package) with a role that may create databases, and Debian's Chromium for the browser test.
# Prints the `export` lines a caller evaluates: `eval "$(tools/ci_services.sh)"`.
# Idempotent; needs root (CI runs as root). Local runs without it skip the PostgreSQL tests.
set -euo pipefail
log() { echo "ci_services: $*" >&2; }
# apt-get install, refreshing the package lists once if they are missing or stale
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; }
}

if ! command -v pg_ctlcluster >/dev/null; then
    log "installing postgresql"
    apt_install postgresql
fi
if ! command -v chromium >/dev/null; then
    log "installing chromium"
    apt_install chromium
fi
version=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
cluster=$(pg_lsclusters -h | awk 'NR==1 {print $2}')
port=$(pg_lsclusters -h | awk 'NR==1 {print $3}')
if [ "$(pg_lsclusters -h | awk 'NR==1 {print $4}')" != "online" ]; then
    log "starting PostgreSQL $version/$cluster on port $port"
    pg_ctlcluster "$version" "$cluster" start >&2
fi
for _ in $(seq 1 30); do
    su postgres -c "pg_isready -q -p $port" && break
    sleep 1
done
su postgres -c "psql -q -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='autopeft'\"" | grep -q 1 \
    || su postgres -c "psql -q -p $port -c \"CREATE ROLE autopeft LOGIN CREATEDB PASSWORD 'autopeft'\"" >&2
echo "export AUTOPEFT_TEST_POSTGRES=postgresql+psycopg2://autopeft:autopeft@127.0.0.1:$port/postgres"
echo "export AUTOPEFT_REQUIRE_POSTGRES=1"
