#!/bin/sh
# Benchmark the closure copy: nixos-via vs nix copy (ssh://) vs tar|zstd|ssh,
# over a real sshd on 127.0.0.1. Run as root from anywhere in the repo:
#
#   install/bench/bench.sh [WORKDIR]      (default /var/tmp/nixos-via-bench)
#
# Needs: nix-bin, openssh-server, openssh-client, zstd, tar, python3.
# The synthetic closure (~2000 paths, ~300 MB, from /usr/lib and /usr/share of
# this machine) is added to a chroot store WORKDIR/src once and reused; the
# real /nix/store is not touched. Delete WORKDIR to rebuild it.
#
# NIXOS_VIA_BENCH_SYSTEM=1 runs the substitution benchmark instead (issue
# 16): a closure shaped like a NixOS system (system.py; ~800 paths, ~1 GB,
# scaled by NIXOS_VIA_BENCH_SCALE, default 1), all but five of its paths in
# an xz and a zstd binary cache made with this machine's Nix, built once in
# WORKDIR/system-SCALE.
set -eu
work=${1:-/var/tmp/nixos-via-bench}
here=$(cd "$(dirname "$0")" && pwd)
nixcmd="nix --extra-experimental-features nix-command --option substituters ''"
mkdir -p "$work"
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r), $(nix --version), $(ssh -V 2>&1)"
if [ -n "${NIXOS_VIA_BENCH_SYSTEM:-}" ]; then
	scale=${NIXOS_VIA_BENCH_SCALE:-1}
	sys=$work/system-$scale
	mkdir -p "$sys"
	if [ ! -s "$sys/paths" ]; then
		echo "building the system-shaped closure (scale $scale) in $sys ..." >&2
		start=$(date +%s)
		python3 "$here/system.py" "$scale" >"$sys/sources"
		xargs -d '\n' nix-store --store "$sys/src" --add <"$sys/sources" | sort -u >"$sys/paths.tmp"
		# The system's own paths, not on the cache: the five whose NAR is
		# nearest 0.2 % of the whole (2 MB each at scale 1).
		eval "$nixcmd" path-info --store "$sys/src" --json $(cat "$sys/paths.tmp") | python3 -c '
import json, sys
infos = json.load(sys.stdin)
each = sum(i["narSize"] for i in infos) / 500
infos.sort(key=lambda i: (abs(i["narSize"] - each), i["path"]))
print("\n".join(i["path"] for i in infos[:5]))' >"$sys/own"
		grep -vxF -f "$sys/own" "$sys/paths.tmp" >"$sys/cached"
		for c in xz zstd; do
			rm -rf "$sys/cache-$c"
			eval "$nixcmd" copy --store "$sys/src" --to "'file://$sys/cache-$c?compression=$c&parallel-compression=true'" $(cat "$sys/cached")
		done
		mv "$sys/paths.tmp" "$sys/paths"
		echo "built $(wc -l <"$sys/paths") paths ($(wc -l <"$sys/own") not cached) in $(($(date +%s) - start)) s" >&2
	fi
	cd "$here"
	NIXOS_VIA_BENCH_STORE=$sys/src NIXOS_VIA_BENCH_PATHS=$sys/paths NIXOS_VIA_BENCH_OWN=$sys/own \
		NIXOS_VIA_BENCH_CACHES=$sys/cache-xz,$sys/cache-zstd \
		go test -run '^$' -bench BenchmarkSubstitute -benchtime 1x -timeout 60m .
	exit
fi
src=$work/src
if [ ! -s "$work/paths" ]; then
	echo "building the synthetic closure in $src ..." >&2
	python3 "$here/select.py" 2000 330 >"$work/sources"
	start=$(date +%s)
	xargs -d '\n' nix-store --store "$src" --add <"$work/sources" | sort -u >"$work/paths.tmp"
	mv "$work/paths.tmp" "$work/paths"
	echo "added $(wc -l <"$work/paths") paths in $(($(date +%s) - start)) s" >&2
fi
cd "$here"
NIXOS_VIA_BENCH_STORE=$src NIXOS_VIA_BENCH_PATHS=$work/paths \
	go test -run '^$' -bench BenchmarkCopy -benchtime 1x -timeout 30m .
