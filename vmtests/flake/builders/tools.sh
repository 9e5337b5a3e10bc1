# Builder of the "tools" store path: the userland of the test system, packed
# from this host's Debian binaries the way Nix packs its own: every dynamic
# binary gets $out/lib/ld-linux-x86-64.so.2 as its interpreter and $out/lib as
# its RUNPATH (patchelf), so it runs on a root without /lib (the installed
# system, a chroot of it). Runs with the sandbox off; host tools by absolute path.
set -eu
export PATH=/usr/bin:/bin:/usr/sbin:/sbin

mkdir -p "$out/bin" "$out/lib" "$out/libexec" "$out/share/systemd-boot"

# busybox is static; each applet is a symlink (busybox dispatches on argv[0]).
cp /bin/busybox "$out/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ -e "$out/bin/$applet" ] || ln -s busybox "$out/bin/$applet"
done

# copy_dyn SRC DEST: copy a dynamic binary and the libraries ldd names for it.
copy_dyn() {
	cp -L "$1" "$2"
	chmod u+w "$2"
	ldd "$1" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | while read -r lib; do
		name=$(basename "$lib")
		[ -e "$out/lib/$name" ] || { cp -L "$lib" "$out/lib/$name"; chmod u+w "$out/lib/$name"; }
	done
}
copy_dyn /usr/sbin/sshd "$out/bin/sshd"
copy_dyn /usr/bin/ssh-keygen "$out/bin/ssh-keygen"
copy_dyn /usr/lib/openssh/sftp-server "$out/libexec/sftp-server"
# flock(1), which busybox lacks: switch-to-configuration's lock, as NixOS's.
copy_dyn /usr/bin/flock "$out/bin/flock"
copy_dyn /usr/bin/nix "$out/bin/nix"
# Nix picks its personality from argv[0], like busybox. The wrapper lets it
# run in a chroot of a root that has no /etc/passwd yet (a fresh install),
# where Nix cannot otherwise tell the user name.
ln -s ../bin/nix "$out/libexec/nix-store"
cat > "$out/bin/nix-store" <<EOT
#!$out/bin/sh
[ -n "\${USER:-}" ] || USER=\$($out/bin/id -un 2>/dev/null) || USER=root
[ -n "\${HOME:-}" ] || HOME=/root
export USER HOME
exec $out/libexec/nix-store "\$@"
EOT
chmod 0755 "$out/bin/nix-store"

for f in "$out/bin/sshd" "$out/bin/ssh-keygen" "$out/bin/flock" "$out/libexec/sftp-server" "$out/bin/nix"; do
	patchelf --set-interpreter "$out/lib/ld-linux-x86-64.so.2" --set-rpath "$out/lib" "$f"
done
for f in "$out"/lib/*.so*; do
	case "$f" in */ld-linux-x86-64.so.2) continue ;; esac
	patchelf --set-rpath "$out/lib" "$f"
done

cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$out/share/systemd-boot/systemd-bootx64.efi"

sed -e "s|@tools@|$out|g" "$udhcpcScript" > "$out/share/udhcpc.script"
chmod 0755 "$out/share/udhcpc.script"
