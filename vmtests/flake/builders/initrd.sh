# Builder of the "initrd" store path: a busybox initramfs (NixOS stage 1
# stand-in) with cryptsetup, lvm and mdadm from this host and the kernel
# modules the test layouts need. $init is the stage-1 script; $extraBins
# names more host binaries to copy (the disk-preparation initrd uses it).
set -eu
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
kver=$(cat "$kernel/version")
root=$(mktemp -d)

mkdir -p "$root/bin" "$root/lib64" "$root/etc/lvm" "$root/etc/mdadm" \
	"$root/dev" "$root/proc" "$root/sys" "$root/run" "$root/tmp" "$root/mnt-root"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
ln -s bin "$root/sbin"

# copy_exec BIN: the binary at /bin/NAME, its libraries where ldd finds them.
copy_exec() {
	rm -f "$root/bin/$(basename "$1")" # replace a busybox applet of that name
	cp -L "$1" "$root/bin/$(basename "$1")"
	ldd "$1" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		[ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
	done
}
copy_exec /usr/sbin/cryptsetup
copy_exec /usr/sbin/lvm
copy_exec /usr/sbin/mdadm
for bin in ${extraBins:-}; do copy_exec "$bin"; done
if [ ! -L "$root/bin/mke2fs" ]; then ln -s mke2fs "$root/bin/mkfs.ext4"; cp /etc/mke2fs.conf "$root/etc/"; fi
if [ -e "$root/bin/mkfs.fat" ]; then ln -s mkfs.fat "$root/bin/mkfs.vfat"; fi

# Modules in load order (each with its dependencies), then depmod for busybox modprobe.
modules="virtio_pci virtio_blk virtio_net virtio_rng dm_mod dm_crypt xts af_alg algif_skcipher md_mod raid1 vfat nls_cp437 nls_iso8859_1 nls_ascii nls_utf8"
for m in $modules; do
	modprobe -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }' | while read -r ko; do
		mkdir -p "$root$(dirname "$ko")"
		cp "$ko" "$root$ko"
	done
	echo "$m" >> "$root/etc/modules"
done
cp "/lib/modules/$kver/modules.order" "/lib/modules/$kver/modules.builtin" "$root/lib/modules/$kver/"
depmod -b "$root" "$kver"

# No udev in this initrd: device-mapper and LVM create their nodes themselves.
cat > "$root/etc/lvm/lvm.conf" <<'CONF'
activation { udev_sync = 0 udev_rules = 0 }
devices { obtain_device_list_from_udev = 0 }
CONF
cat > "$root/etc/mdadm/mdadm.conf" <<'CONF'
DEVICE partitions
HOMEHOST <ignore>
CONF

cp "$init" "$root/init"
chmod 0755 "$root/init"

mkdir -p "$out"
(cd "$root" && find . | sort | cpio --quiet -o -H newc -R 0:0) | gzip -6 > "$out/initrd"
chmod -R u+w "$root" && rm -rf "$root"
