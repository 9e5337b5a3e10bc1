#!@tools@/bin/sh
# The activation script of the test system: /etc from the toplevel,
# /run/current-system, users' homes, host keys. At boot (stage 2 runs it as
# sysinit, NIXOS_ACTION unset) also the network and the boot marker on the
# console; switch-to-configuration runs it again with NIXOS_ACTION=switch or
# test, as NixOS's, on a system whose network is up already.
systemConfig=@out@
export PATH=@tools@/bin

ln -sfn "$systemConfig" /run/current-system
[ -e /run/booted-system ] || ln -sfn "$systemConfig" /run/booted-system
mkdir -p /bin /usr/bin /root /var/empty /var/log /etc/ssh/authorized_keys.d /run/sshd /nix/var/nix/gcroots
ln -sfn /run/current-system/sw/bin/sh /bin/sh
ln -sfn /run/current-system/sw/bin/env /usr/bin/env
ln -sfn "$systemConfig/etc" /etc/static
# A file this system lacks (root's authorized keys) goes away with the old one.
for f in passwd group shadow nsswitch.conf os-release hostname ssh/sshd_config ssh/authorized_keys.d/root; do
	rm -f "/etc/$f"
	[ ! -e "/etc/static/$f" ] || ln -s "/etc/static/$f" "/etc/$f"
done
for u in $(cat /etc/static/ssh-users); do
	rm -f "/etc/ssh/authorized_keys.d/$u"
	ln -s "/etc/static/ssh/authorized_keys.d/$u" "/etc/ssh/authorized_keys.d/$u"
	mkdir -p "/home/$u"
	chown "$u:users" "/home/$u"
done
hostname -F /etc/hostname

# Like NixOS's sshd-keygen: keep installed host keys, create missing ones.
[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
chmod 0600 /etc/ssh/ssh_host_*_key

[ -z "${NIXOS_ACTION:-}" ] || exit 0

ip link set lo up
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
	[ -e /sys/class/net/eth0 ] && break
	sleep 0.2
done
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 1 -s "$systemConfig/sw/share/udhcpc.script" || echo "udhcpc on eth0 failed"

echo "<<< NixOS test system booted: $systemConfig >>>"
