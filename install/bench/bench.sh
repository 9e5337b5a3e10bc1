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
set -eu
work=${1:-/var/tmp/nixos-via-bench}
here=$(cd "$(dirname "$0")" && pwd)
src=$work/src
mkdir -p "$work"
if [ ! -s "$work/paths" ]; then
	echo "building the synthetic closure in $src ..." >&2
	python3 "$here/select.py" 2000 330 >"$work/sources"
	start=$(date +%s)
	xargs -d '\n' nix-store --store "$src" --add <"$work/sources" | sort -u >"$work/paths.tmp"
	mv "$work/paths.tmp" "$work/paths"
	echo "added $(wc -l <"$work/paths") paths in $(($(date +%s) - start)) s" >&2
fi
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r), $(nix --version), $(ssh -V 2>&1)"
cd "$here"
NIXOS_VIA_BENCH_STORE=$src NIXOS_VIA_BENCH_PATHS=$work/paths \
	go test -run '^$' -bench BenchmarkCopy -benchtime 1x -timeout 30m .
