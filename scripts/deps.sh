#!/usr/bin/env bash
# Installs the Debian packages triggerd needs to build and test, if any is
# missing. Needs root (or sudo) only when something must be installed.
set -euo pipefail

pkgs=(gcc make cmake pkg-config python3 ca-certificates
      libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
      libsqlite3-dev libsystemd-dev libpq-dev)
# Only the tests need these, not the build: a PostgreSQL server (the tests
# start a throw-away cluster) and the web console's browser test.
test_pkgs=(postgresql chromium chromium-driver python3-selenium)
pkgs+=("${test_pkgs[@]}" "$@")

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
