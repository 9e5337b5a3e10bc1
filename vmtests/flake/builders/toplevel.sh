# Builder of a system toplevel: the NixOS toplevel interface (init, kernel,
# initrd, kernel-params, system, nixos-version, bin/switch-to-configuration,
# sw, etc) around the shared tools, kernel and initrd store paths.
set -eu
export PATH=/usr/bin:/bin

mkdir -p "$out/bin" "$out/etc/ssh/authorized_keys.d"
subst() {
	sed -e "s|@out@|$out|g" -e "s|@tools@|$tools|g" "$1" > "$2"
	chmod 0755 "$2"
}
subst "$stage2" "$out/init"
subst "$activate" "$out/activate"
subst "$switch" "$out/bin/switch-to-configuration"
ln -s "$kernel/bzImage" "$out/kernel"
ln -s "$initrd/initrd" "$out/initrd"
ln -s "$tools" "$out/sw"
printf '%s' "$kernelParams" > "$out/kernel-params"
printf '%s' "$system" > "$out/system"
printf '%s' "$nixosVersion" > "$out/nixos-version"

etc=$out/etc
cat > "$etc/passwd" <<EOT
root:x:0:0:System administrator:/root:/run/current-system/sw/bin/sh
sshd:x:997:65534:SSH privilege separation user:/var/empty:/run/current-system/sw/bin/nologin
nobody:x:65534:65534:Unprivileged account:/var/empty:/run/current-system/sw/bin/nologin
EOT
uid=1000
for u in $sshUsers; do
	echo "$u:x:$uid:100::/home/$u:/run/current-system/sw/bin/sh" >> "$etc/passwd"
	uid=$((uid + 1))
done
cat > "$etc/group" <<EOT
root:x:0:
wheel:x:1:$(echo $sshUsers | tr ' ' ',')
users:x:100:
sshd:x:997:
nogroup:x:65534:
EOT
cat > "$etc/shadow" <<EOT
root:*:1::::::
sshd:*:1::::::
nobody:*:1::::::
EOT
for u in $sshUsers; do echo "$u:*:1::::::" >> "$etc/shadow"; done
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > "$etc/nsswitch.conf"
cat > "$etc/os-release" <<EOT
NAME=NixOS
ID=nixos
VERSION_ID="$release"
BUILD_ID="$nixosVersion"
PRETTY_NAME="NixOS $nixosVersion (nixos-via test system)"
VARIANT_ID=nixos-via-test
EOT
echo "$hostName" > "$etc/hostname"
cat > "$etc/ssh/sshd_config" <<EOT
Port $sshPort
PermitRootLogin $permitRootLogin
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u
PidFile /run/sshd.pid
Subsystem sftp $tools/libexec/sftp-server
SetEnv PATH=/run/current-system/sw/bin
EOT
[ -z "$sshExtra" ] || printf '%s\n' "$sshExtra" >> "$etc/ssh/sshd_config"
[ -z "$rootKey" ] || cp "$authorizedKeys" "$etc/ssh/authorized_keys.d/root"
for u in $sshUsers; do cp "$authorizedKeys" "$etc/ssh/authorized_keys.d/$u"; done
printf '%s\n' $sshUsers > "$etc/ssh-users"
