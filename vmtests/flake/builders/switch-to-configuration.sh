#!@tools@/bin/sh
# switch-to-configuration of the test system. Only "boot" is supported: it
# (re)writes the systemd-boot configuration on the ESP mounted at /boot for
# every generation of /nix/var/nix/profiles/system, as NixOS's
# systemd-boot-builder does, and with NIXOS_INSTALL_BOOTLOADER=1 also installs
# systemd-boot itself (EFI/systemd/systemd-bootx64.efi and the removable-media
# path EFI/BOOT/BOOTX64.EFI; no EFI variables are written). Any failure exits
# non-zero.
set -eu
export PATH=@tools@/bin
efi=@tools@/share/systemd-boot/systemd-bootx64.efi
profiles=/nix/var/nix/profiles

die() { echo "switch-to-configuration: $*" >&2; exit 1; }

case "${1:-}" in
boot) ;;
switch | test | dry-activate) die "action $1 is not supported by the test system (only boot)" ;;
*) die "usage: switch-to-configuration boot" ;;
esac

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
