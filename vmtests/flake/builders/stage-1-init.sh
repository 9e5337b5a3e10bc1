#!/bin/sh
# Stage 1 of the test system (the initrd's /init), standing in for NixOS's.
# Kernel parameters it reads:
#   root=DEV        /dev/..., /dev/disk/by-{partlabel,label,uuid}/X, UUID=X, LABEL=X, PARTLABEL=X
#   init=PATH       the toplevel's init (stage 2), as NixOS's boot entries pass it
#   luks=DEV:NAME[:KEYFILE]  open DEV as /dev/mapper/NAME before looking for root (repeatable);
#                   with KEYFILE present in the initrd it is the key; otherwise (as NixOS falls
#                   back when boot.initrd.luks.devices.NAME.keyFile is missing) the passphrase
#                   is read from the console
#   md=1            assemble mdadm arrays    lvm=1  activate LVM volume groups
# There is no udev: devices are resolved through sysfs and findfs.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/cryptsetup /run/lvm /dev/pts
export DM_DISABLE_UDEV=1

log() { echo "<<< stage-1: $* >>>" >/dev/console; }
fail() {
	echo "<<< stage-1: FATAL: $* >>>" >/dev/console
	sleep 1
	poweroff -f
}

root= init= md= lvm= luks=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	root=*) root=${arg#root=} ;;
	init=*) init=${arg#init=} ;;
	luks=*) luks="$luks ${arg#luks=}" ;;
	md=1) md=1 ;;
	lvm=1) lvm=1 ;;
	esac
done
[ -n "$root" ] || fail "no root= on the kernel command line"
[ -n "$init" ] || fail "no init= on the kernel command line"

for m in $(cat /etc/modules); do modprobe "$m" || log "modprobe $m failed"; done

# resolve SPEC: print the /dev node SPEC names, or nothing if it is absent.
resolve() {
	case "$1" in
	/dev/disk/by-partlabel/*) set -- "PARTLABEL=${1#/dev/disk/by-partlabel/}" ;;
	/dev/disk/by-label/*) set -- "LABEL=${1#/dev/disk/by-label/}" ;;
	/dev/disk/by-uuid/*) set -- "UUID=${1#/dev/disk/by-uuid/}" ;;
	esac
	case "$1" in
	PARTLABEL=*)
		for ev in /sys/class/block/*/uevent; do
			if grep -qx "PARTNAME=${1#PARTLABEL=}" "$ev"; then
				echo "/dev/$(sed -n 's/^DEVNAME=//p' "$ev")"
				return
			fi
		done ;;
	UUID=* | LABEL=*) findfs "$1" 2>/dev/null ;;
	/dev/*) [ -b "$1" ] && readlink -f "$1" ;;
	*) fail "unsupported device name $1" ;;
	esac
}

# wait_dev SPEC: resolve SPEC, waiting up to 10 s for it to appear.
wait_dev() {
	i=0
	while [ $i -lt 50 ]; do
		dev=$(resolve "$1")
		[ -n "$dev" ] && { echo "$dev"; return; }
		sleep 0.2
		i=$((i + 1))
	done
	fail "device $1 did not appear"
}

if [ -n "$md" ]; then
	sleep 0.5
	mdadm --assemble --scan --run || fail "mdadm --assemble --scan failed"
fi

for spec in $luks; do
	IFS=: read -r dev name keyfile <<EOT
$spec
EOT
	[ -n "$dev" ] && [ -n "$name" ] || fail "bad luks=$spec (want DEV:NAME[:KEYFILE])"
	dev=$(wait_dev "$dev")
	if [ -n "$keyfile" ] && [ -e "$keyfile" ]; then
		cryptsetup open --key-file "$keyfile" "$dev" "$name" || fail "cryptsetup open $dev $name failed"
		continue
	fi
	tries=0
	while :; do
		# Echo off before the prompt: whoever types as soon as the prompt
		# shows must never see the passphrase echoed on the console.
		stty -echo 2>/dev/null
		printf 'Enter passphrase for %s (%s): ' "$name" "$dev"
		read -r pass
		stty echo 2>/dev/null
		echo
		if printf '%s' "$pass" | cryptsetup open --key-file=- "$dev" "$name"; then
			log "unlocked $dev as /dev/mapper/$name"
			break
		fi
		tries=$((tries + 1))
		[ $tries -lt 3 ] || fail "could not unlock $dev"
	done
	pass=
done

if [ -n "$lvm" ]; then
	lvm vgscan --mknodes >/dev/null 2>&1
	lvm vgchange -ay || fail "lvm vgchange -ay failed"
	lvm vgmknodes >/dev/null 2>&1
fi

rootdev=$(wait_dev "$root")
log "mounting $rootdev ($root) on /mnt-root"
mount -o rw "$rootdev" /mnt-root || fail "mount $rootdev failed"
[ -e "/mnt-root$init" ] || fail "$init is not in the root file system"

mkdir -p /mnt-root/dev /mnt-root/run /mnt-root/proc /mnt-root/sys
mount --move /dev /mnt-root/dev
mount --move /run /mnt-root/run
umount /sys /proc
exec switch_root /mnt-root "$init"
