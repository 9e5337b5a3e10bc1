# Registers the received paths with the host's Nix (their nix-store
# --load-db text on stdin) while the GC lock is still held, and roots the
# new system (gcroots/nixos-via-deploy, removed by the supervisor once the
# profile or the running system holds it). Arguments: ROOT NIXSTORE TOPLEVEL.
set -e
R=$1 ns=$2 top=$3
if [ "$ns" != none ]; then
	if [ -n "$R" ]; then chroot "$R" "$ns" --load-db; else "$ns" --load-db; fi
fi
rm -rf "$R/nix/var/nixos-via"
mkdir -p "$R/nix/var/nix/gcroots"
ln -sfn "$top" "$R/nix/var/nix/gcroots/nixos-via-deploy"
