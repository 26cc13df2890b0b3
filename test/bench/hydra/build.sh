#!/bin/sh
# Builds Ory Hydra, pinned as a Go tool in this module (never in Lanyard's go.mod), into
# $1; make bench-compare calls it only when the binary is missing. Hydra's go.mod has a
# replace directive, so `go install …@version` cannot build it; this module repeats it.
# The sqlite tags: without them Hydra refuses sqlite:// DSNs.
# First build: several minutes on 2 cores.
set -eu
out=$1
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
cd "$(dirname "$0")"
mkdir -p "$(dirname "$out")"
# The version Hydra reports (`hydra version`, logs) is set at link time, as its release
# builds do; read it from this module's go.mod.
version=$(go list -m -f '{{.Version}}' github.com/ory/hydra/v2)
go build -tags sqlite,sqlite_omit_load_extension \
	-ldflags "-X github.com/ory/hydra/v2/driver/config.Version=$version" \
	-o "$out.tmp" github.com/ory/hydra/v2
mv "$out.tmp" "$out"
echo "hydra: built $out"
