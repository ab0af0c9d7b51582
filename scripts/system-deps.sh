#!/usr/bin/env bash
# System packages the tests and benchmarks need: Java 17 for Spark (local mode), Chromium for
# the page tests, wrk for the serving benchmark, PostgreSQL 15 under the tests' tracking server.
# Installs only what is missing; needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)  # the serving benchmark's load generator
# initdb and pg_ctl, run by tests/tracking_server.py (the package's own cluster is not used)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system-deps: java, chromium, wrk and postgresql-15 present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
