#!/usr/bin/env bash
# Installs the Debian 12 packages that nixos-via's tests and demo need.
# Idempotent: packages already installed are skipped, and apt-get runs only
# when something is missing.
set -euo pipefail
packages=(
  # SSH: a real sshd for integration tests, the client tools for agent tests
  openssh-server openssh-client sudo netcat-openbsd
  # disk tools the rendered disko scripts run
  gdisk fdisk parted cryptsetup-bin lvm2 mdadm e2fsprogs dosfstools btrfs-progs xfsprogs util-linux mtools
  # images: kernel, busybox, initramfs and kexec parts
  linux-image-cloud-amd64 busybox-static kmod cpio zstd kexec-tools iproute2 dash
  # VMs and the test NixOS system
  qemu-system-x86 qemu-utils ovmf systemd-boot-efi nix-bin patchelf
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || { echo "setup: Go is missing (want /usr/local/go)"; exit 1; }
echo "setup: all packages present"
