#!/usr/bin/env bash
# The main job: install the embedded default system (vmtests/flake#demo) into
# a local QEMU VM, end to end, through the real nixos-via command line.
#
#   1. build nixos-via (static), a "provider" image standing for a fresh
#      Linux VPS, and our kexec installer tarball;
#   2. boot the provider under OVMF (UEFI) with a blank 4 GiB target disk;
#   3. nixos-via --flake ./vmtests/flake#demo root@127.0.0.1 -p PORT:
#      kexec, disko, closure, systemd-boot, reboot, verify;
#   4. leave the installed VM running and say how to log in.
#
# Everything stays on this machine: the VM's network is QEMU user networking
# restricted to itself, with one forward from 127.0.0.1:PORT to its sshd.
# Environment: DEMO_PORT (default 10022), DEMO_DIR (default .cache/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH="/usr/local/go/bin:$PATH"
bash vmtests/setup.sh

dir=${DEMO_DIR:-$repo/.cache/demo}
port=${DEMO_PORT:-10022}
mkdir -p "$dir"
if [ -f "$dir/qemu.pid" ] && kill -0 "$(cat "$dir/qemu.pid")" 2>/dev/null; then
  echo "demo: stopping the previous demo VM"
  kill "$(cat "$dir/qemu.pid")"; sleep 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: 127.0.0.1:$port is in use; set DEMO_PORT to a free port" >&2
  exit 1
fi

echo "==> building nixos-via (static)"
CGO_ENABLED=0 go build -ldflags='-s -w' -o "$dir/nixos-via" ./cmd/nixos-via
nv=$dir/nixos-via

echo "==> keys: the provider's host key, and the test systems' login key"
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C demo-provider -f "$dir/host_key"
install -m 600 vmtests/flake/keys/snakeoil_ed25519 "$dir/login_key"
cp vmtests/flake/keys/snakeoil_ed25519.pub "$dir/login_key.pub"

echo "==> building the provider image (a generic Linux host, with its own UEFI boot disk) and the kexec installer"
"$nv" image provider --out "$dir/provider" --host-key "$dir/host_key" --authorized-keys "$dir/login_key.pub" \
  --boot-disk "$dir/provider-disk.qcow2"
"$nv" image installer --out "$dir/installer.tar.gz" --agent "$nv"

echo "==> a blank 4 GiB target disk"
rm -f "$dir/target.qcow2"
qemu-img create -q -f qcow2 "$dir/target.qcow2" 4G
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$dir/OVMF_VARS.fd"

echo "==> booting the provider VM (QEMU TCG, OVMF, 512 MiB) with ssh on 127.0.0.1:$port"
rm -f "$dir/console.log"
qemu-system-x86_64 -name nixos-via-demo -accel tcg -cpu qemu64,+ssse3,+sse4.1,+sse4.2,+aes,+pclmulqdq,+popcnt \
  -smp 1 -m 512 -machine q35 -nodefaults -display none -monitor none \
  -serial "file:$dir/console.log" -daemonize -pidfile "$dir/qemu.pid" \
  -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
  -drive "if=pflash,format=raw,unit=1,file=$dir/OVMF_VARS.fd" \
  -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0,romfile= \
  -device virtio-rng-pci \
  -drive "file=$dir/target.qcow2,if=none,id=d0,format=qcow2,cache=unsafe" -device virtio-blk-pci,drive=d0,bootindex=0 \
  -drive "file=$dir/provider-disk.qcow2,if=none,id=d1,format=qcow2,cache=unsafe" -device virtio-blk-pci,drive=d1,bootindex=1

printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" > "$dir/known_hosts"

echo "==> nixos-via --flake ./vmtests/flake#demo root@127.0.0.1 -p $port"
"$nv" --flake "path:$repo/vmtests/flake#demo" \
  --kexec "$dir/installer.tar.gz" \
  -i "$dir/login_key" --ssh-option "UserKnownHostsFile=$dir/known_hosts" \
  --option substituters '' --yes \
  root@127.0.0.1 -p "$port"

cat <<EOF

The VM now runs the installed test NixOS system from its own disk.
  log in:     ssh -i $dir/login_key -o UserKnownHostsFile=$dir/known_hosts -p $port root@127.0.0.1
  console:    $dir/console.log
  stop it:    kill \$(cat $dir/qemu.pid)
EOF
