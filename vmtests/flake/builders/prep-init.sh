#!/bin/sh
# /init of the disk-preparation initrd used by the tests (not part of any
# system): it runs /prepare.sh from the ext4 disk labelled "nvprep", prints
# a result line on the console and powers the VM off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/cryptsetup /run/lvm /prep /mnt
export DM_DISABLE_UDEV=1 MDADM_NO_UDEV=1
for m in $(cat /etc/modules); do modprobe "$m"; done
i=0
until dev=$(findfs LABEL=nvprep 2>/dev/null); do
	i=$((i + 1))
	[ $i -lt 50 ] || { echo "PREP-RESULT: no disk labelled nvprep"; poweroff -f; }
	sleep 0.2
done
mount -o ro "$dev" /prep
sh -e /prep/prepare.sh
echo "PREP-RESULT: exit $?"
sync
poweroff -f
