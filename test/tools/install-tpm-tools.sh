#!/bin/sh
# Installs the software TPM (swtpm, swtpm_setup) and tpm2-tools that the TPM tests
# drive, when they are missing. Called by `make test` and .ci/run. Without root (or
# apt-get) it only says what is missing: the tests then skip, or fail when
# LANYARD_REQUIRE_SERVICES=1.
set -eu

missing=""
command -v swtpm >/dev/null 2>&1 || missing="$missing swtpm"
command -v swtpm_setup >/dev/null 2>&1 || missing="$missing swtpm-tools"
command -v tpm2_quote >/dev/null 2>&1 || missing="$missing tpm2-tools"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "install-tpm-tools: missing:$missing (not root or no apt-get: not installing; TPM tests will skip)" >&2
	exit 0
fi
echo "install-tpm-tools: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale package index makes install fail with 404s: refresh it once and retry.
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing >/dev/null ||
	{ apt-get update >/dev/null && apt-get install -y --no-install-recommends $missing >/dev/null; }
