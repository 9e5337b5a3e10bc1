#!@tools@/bin/sh
# Stage 2 of the test system (the toplevel's init), standing in for NixOS's:
# mount what is needed, activate (/etc, users, /run/current-system), then hand
# PID 1 to busybox init, which runs the activation and the services from
# /etc/inittab and reaps orphans. sshd is the current system's
# (/run/current-system, which switch-to-configuration moves), so a
# restarted one is the new system's.
systemConfig=@out@
export PATH=@tools@/bin
mkdir -p /proc /sys /dev /run /tmp /etc
mountpoint() { [ "$(stat -c %d "$1")" != "$(stat -c %d "$1/..")" ]; }
mountpoint /proc || mount -t proc proc /proc
mountpoint /sys || mount -t sysfs sysfs /sys
mountpoint /dev || mount -t devtmpfs devtmpfs /dev
mountpoint /run || mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /dev/pts /dev/shm
mountpoint /dev/pts || mount -t devpts -o mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -o remount,rw /
# /boot is the ESP (disko's partlabel disk-main-ESP in every layout), as
# NixOS mounts fileSystems."/boot": switch-to-configuration writes there.
if ! mountpoint /boot; then
	for ev in /sys/class/block/*/uevent; do
		grep -qx PARTNAME=disk-main-ESP "$ev" || continue
		dev=/dev/$(sed -n 's/^DEVNAME=//p' "$ev")
		mkdir -p /boot
		mount -t vfat -o umask=0077 "$dev" /boot || echo "mounting the ESP $dev on /boot failed"
		break
	done
fi
exec </dev/console >/dev/console 2>&1
echo "<<< NixOS stage 2: $systemConfig >>>"

cat > /etc/inittab <<EOT
::sysinit:$systemConfig/activate
::respawn:/run/current-system/sw/bin/sshd -D -f /etc/ssh/sshd_config -E /run/sshd.log
::ctrlaltdel:$systemConfig/sw/bin/reboot
::shutdown:$systemConfig/sw/bin/sync
::shutdown:$systemConfig/sw/bin/umount -a -r
EOT
exec $systemConfig/sw/bin/init
