#!@tools@/bin/sh
# switch-to-configuration of the test system, with NixOS's actions:
#   boot          the bootloader only: (re)writes the systemd-boot
#                 configuration on the ESP mounted at /boot for every
#                 generation of /nix/var/nix/profiles/system, as NixOS's
#                 systemd-boot-builder does, and with
#                 NIXOS_INSTALL_BOOTLOADER=1 also installs systemd-boot
#                 itself (EFI/systemd/systemd-bootx64.efi and the
#                 removable-media path EFI/BOOT/BOOTX64.EFI; no EFI
#                 variables are written)
#   switch        boot, then activate this system and restart its services
#   test          activate and restart, the bootloader untouched
#   dry-activate  print what switch or test would change; change nothing
# Activating runs this system's activate script with NIXOS_ACTION set (/etc,
# /run/current-system, users, authorized keys). The one service is sshd,
# respawned by busybox init (see stage-2-init.sh): when its configuration
# changed, the listener is restarted and the connections it started stay
# up, as systemd does with sshd.service's KillMode=process. As NixOS's, it
# holds /run/nixos/switch-to-configuration.lock (flock) and refuses to run
# beside another one. Any failure exits non-zero.
set -eu
export PATH=@tools@/bin
out=@out@
efi=@tools@/share/systemd-boot/systemd-bootx64.efi
profiles=/nix/var/nix/profiles

die() { echo "switch-to-configuration: $*" >&2; exit 1; }

action=${1:-}
case "$action" in
boot | switch | test | dry-activate) ;;
*) die "usage: switch-to-configuration switch|boot|test|dry-activate" ;;
esac
export NIXOS_ACTION=$action

if [ "$action" != dry-activate ] && command -v flock >/dev/null; then
	mkdir -p /run/nixos
	exec 9>/run/nixos/switch-to-configuration.lock
	flock -n 9 || die "could not take /run/nixos/switch-to-configuration.lock: another switch-to-configuration is running"
fi

# sshd_changed: whether the running sshd's configuration differs from this
# system's (the running one is what /etc/ssh/sshd_config is now).
sshd_changed() {
	! cmp -s /etc/ssh/sshd_config "$out/etc/ssh/sshd_config"
}

# restart_sshd: end the listener (its pid file's process); busybox init
# starts a new one with the new /etc/ssh/sshd_config. Sessions are their
# own processes (sshd forks and setsid()s each) and stay up.
restart_sshd() {
	old=$(cat /run/sshd.pid 2>/dev/null || true)
	[ -n "$old" ] || die "restarting sshd: no /run/sshd.pid, sshd is not running"
	kill -TERM "$old" || die "restarting sshd: kill -TERM $old failed"
	i=0
	while :; do
		new=$(cat /run/sshd.pid 2>/dev/null || true)
		[ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" 2>/dev/null && break
		i=$((i + 1))
		[ $i -lt 100 ] || die "restarting sshd: no new sshd within 10s (/run/sshd.pid holds '${new}', the old one was $old)"
		sleep 0.1
	done
	echo "restarted sshd.service (pid $old -> $new)"
}

if [ "$action" = dry-activate ]; then
	echo "would activate the configuration $out"
	cur=$(readlink -f /run/current-system 2>/dev/null || true)
	[ -n "$cur" ] && [ -d "$cur/etc" ] || die "no /run/current-system to compare with"
	for f in $(cd "$out/etc" && find . ! -type d | sed 's|^\./||' | sort); do
		if [ ! -e "$cur/etc/$f" ]; then
			echo "would add /etc/$f"
		elif ! cmp -s "$cur/etc/$f" "$out/etc/$f"; then
			echo "would change /etc/$f"
		fi
	done
	for f in $(cd "$cur/etc" && find . ! -type d | sed 's|^\./||' | sort); do
		[ -e "$out/etc/$f" ] || echo "would remove /etc/$f"
	done
	if sshd_changed; then
		echo "would restart the following units: sshd.service"
	fi
	exit 0
fi

if [ "$action" = test ]; then
	sshd_restart=
	sshd_changed && sshd_restart=1
	"$out/activate" || die "$out/activate failed"
	[ -z "$sshd_restart" ] || restart_sshd
	echo "activated $out (bootloader unchanged)"
	exit 0
fi

[ -L "$profiles/system" ] || die "$profiles/system does not exist"
current=$(readlink "$profiles/system")
current=${current##*/}
[ -d /boot ] || die "/boot does not exist"
[ "$(stat -c %d /boot)" != "$(stat -c %d /)" ] || die "/boot is not a mount point (the ESP must be mounted there)"
fstype=$(stat -f -c %T /boot)
case "$fstype" in
msdos | vfat) ;;
*) die "/boot is a $fstype file system, not a FAT EFI system partition" ;;
esac

if [ "${NIXOS_INSTALL_BOOTLOADER:-}" = 1 ]; then
	mkdir -p /boot/EFI/systemd /boot/EFI/BOOT
	cp "$efi" /boot/EFI/systemd/systemd-bootx64.efi.tmp
	mv /boot/EFI/systemd/systemd-bootx64.efi.tmp /boot/EFI/systemd/systemd-bootx64.efi
	cp "$efi" /boot/EFI/BOOT/BOOTX64.EFI.tmp
	mv /boot/EFI/BOOT/BOOTX64.EFI.tmp /boot/EFI/BOOT/BOOTX64.EFI
	echo "installed systemd-boot to /boot"
elif [ ! -e /boot/EFI/systemd/systemd-bootx64.efi ]; then
	die "systemd-boot is not installed on /boot (run with NIXOS_INSTALL_BOOTLOADER=1)"
fi

mkdir -p /boot/EFI/nixos /boot/loader/entries
# copy_to_esp FILE: copy a kernel or initrd (once) and print its path on the ESP.
copy_to_esp() {
	real=$(readlink -f "$1")
	dir=${real%/*}
	name="${dir##*/}-${real##*/}.efi"
	if [ ! -e "/boot/EFI/nixos/$name" ]; then
		cp "$real" "/boot/EFI/nixos/$name.tmp"
		mv "/boot/EFI/nixos/$name.tmp" "/boot/EFI/nixos/$name"
	fi
	echo "/EFI/nixos/$name"
}

found=
wanted=
for link in "$profiles"/system-*-link; do
	[ -L "$link" ] || continue
	gen=${link##*/system-}
	gen=${gen%-link}
	kernel=$(copy_to_esp "$link/kernel")
	initrd=$(copy_to_esp "$link/initrd")
	toplevel=$(readlink -f "$link")
	entry=/boot/loader/entries/nixos-generation-$gen.conf
	cat > "$entry.tmp" <<EOT
title NixOS
version Generation $gen $(cat "$link/nixos-version")
linux $kernel
initrd $initrd
options init=$toplevel/init $(cat "$link/kernel-params")
EOT
	mv "$entry.tmp" "$entry"
	wanted="$wanted ${kernel##*/} ${initrd##*/} nixos-generation-$gen.conf"
	[ "system-$gen-link" = "$current" ] && found=$gen
done
[ -n "$found" ] || die "$profiles/system points to $current, which is not a system-N-link generation"

printf 'timeout 0\ndefault nixos-generation-%s.conf\n' "$found" > /boot/loader/loader.conf.tmp
mv /boot/loader/loader.conf.tmp /boot/loader/loader.conf

# Remove entries, kernels and initrds of generations that are gone.
for f in /boot/loader/entries/nixos-generation-*.conf /boot/EFI/nixos/*.efi; do
	[ -e "$f" ] || continue
	case " $wanted " in *" ${f##*/} "*) ;; *) rm -f "$f" ;; esac
done
sync
echo "systemd-boot entries written to /boot (default: generation $found)"

if [ "$action" = switch ]; then
	sshd_restart=
	sshd_changed && sshd_restart=1
	"$out/activate" || die "$out/activate failed"
	[ -z "$sshd_restart" ] || restart_sshd
	echo "activated $out"
fi
