# Which of the store paths on stdin the host lacks: invalid to its Nix
# (nix-store --check-validity), or absent when it has none. An invalid
# path that is there anyway (a half-written or unregistered leftover) is
# removed, as Nix removes one before it writes the path; so are the
# records of an earlier receive. Prints "missing PATH" for each.
# Arguments: ROOT NIXSTORE ("none": no Nix).
R=$1 ns=$2
rm -rf "$R/nix/var/nixos-via"
if [ "$ns" = none ]; then
	while read -r p; do [ -e "$R$p" ] || echo "$p"; done
else
	if [ -n "$R" ]; then xargs chroot "$R" "$ns" --check-validity --print-invalid; else xargs "$ns" --check-validity --print-invalid; fi
fi | while read -r p; do
	[ -e "$R$p" ] || [ -L "$R$p" ] && rm -rf "$R$p"
	echo "missing $p"
done
