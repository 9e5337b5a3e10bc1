# Builder of the "kernel" store path: this host's Debian cloud kernel.
set -eu
export PATH=/usr/bin:/bin
kernel=$(ls /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n 1)
[ -n "$kernel" ] || { echo "no /boot/vmlinuz-*-cloud-amd64 (install linux-image-cloud-amd64)" >&2; exit 1; }
mkdir -p "$out"
cp "$kernel" "$out/bzImage"
basename "$kernel" | sed 's/^vmlinuz-//' > "$out/version"
