#!/usr/bin/env bash
# Install the Debian packages wa_notify needs to build, test and demo.
# Idempotent: runs apt-get (with one update first) only when a package is missing.
set -euo pipefail
PKGS=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libcurl4-openssl-dev
      libssl-dev libjson-c-dev libmicrohttpd-dev libpq-dev libipc-run-perl
      make gcc curl python3 openssl clang-14 libclang-rt-14-dev wrk
      prometheus-postgres-exporter pg-auto-failover-cli postgresql-15-auto-failover ${WA_EXTRA_PKGS:-})
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's postgresql-common would create and start a "main" cluster on 5432;
# wa_notify's scripts never use it, they run throw-away clusters of their own.
