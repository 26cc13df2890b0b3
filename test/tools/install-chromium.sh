#!/usr/bin/env sh
# Installs Debian's chromium for the browser tests (test/e2e/ui_*) when it is missing.
# Called by `make test` and `.ci/run`. Without root or apt-get it only says what is
# missing: the browser tests then skip, or fail when LANYARD_REQUIRE_SERVICES=1.
set -eu

if command -v chromium >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "install-chromium: chromium is not installed and cannot be installed here (needs root and apt-get); browser tests will skip" >&2
	exit 0
fi
echo "install-chromium: installing Debian chromium for the browser tests"
# Another apt-get may hold the dpkg lock on a shared machine: wait for it, not fail.
apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium >/dev/null ||
	{ apt-get -o DPkg::Lock::Timeout=600 update >/dev/null && apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium >/dev/null; }
command -v chromium >/dev/null 2>&1
