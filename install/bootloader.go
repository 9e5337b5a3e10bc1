package install

import (
	"context"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/target"
)

// InstallBootloader does what nixos-install and nixos-enter do before and
// around `switch-to-configuration boot` (install/NIXOS-INSTALL.md has the
// step-by-step account): it marks root as a NixOS installation
// (etc/NIXOS), links etc/mtab to /proc/mounts, and in a chroot of root
// with /dev, /proc, /sys and a fresh /run runs the system's activate,
// then its systemd-tmpfiles --create --remove -E when it has one (both
// failures ignored, as nixos-enter does), then switch-to-configuration
// boot with NIXOS_INSTALL_BOOTLOADER=1, whose failure is an error.
//
// The chroot's mounts never reach the installer's: the script runs in a
// private mount namespace of its own (unshare), or where that fails makes
// every bind mount a slave before anything is unmounted, so that tearing
// them down cannot take /dev/pts, /dev/shm or the cgroup mounts away from
// an installer whose mounts are shared (as systemd makes them).
func InstallBootloader(ctx context.Context, conn Host, sink event.Sink, root string) error {
	sink = sinkOr(sink)
	report(sink, event.Step, "installing the bootloader (switch-to-configuration boot)")
	return runScript(ctx, conn, sink, "switch-to-configuration boot", bootloaderScript(rootOr(root)))
}

// bootloaderScript is InstallBootloader's script for the root r. It
// re-runs itself ($0) under unshare when it can.
func bootloaderScript(r string) string {
	return "set -e\nr=" + target.ShellQuote(r) + "\n" + chrootSetup + chrootRun
}

// chrootSetup prepares the root for the chroot (in a namespace of its own
// where it can): the NixOS marks, /dev, /proc, /sys and /run, undone on exit.
const chrootSetup = `# A mount namespace of the script's own: its mounts go with it and no
# unmount reaches the installer's. Also its own hostname (activation sets
# one), network (nothing here needs one, and whatever activation does to
# interfaces stays off the installer's, which carries this session) and
# pid namespace (nothing started in the chroot outlives it and keeps the
# root's file systems busy).
if [ -z "${NIXOS_VIA_CHROOT_NS:-}" ]; then
  # sh by its path: busybox's unshare would run its own ash for "sh",
  # whose own mount and umount lack what this script uses.
  sh=$(command -v sh)
  for f in "-m -u -n -p -f" "-m -u -p -f" "-m"; do
    if unshare $f true 2>/dev/null; then
      export NIXOS_VIA_CHROOT_NS=1
      exec unshare $f -- "$sh" "$0" "$@"
    fi
  done
  echo "no private mount namespace (unshare failed): the chroot's mounts are slaves of the installer's" >&2
else
  mount --make-rprivate /
fi
umask 022
unset TMPDIR SUDO_USER
mkdir -m 0755 -p "$r/etc" "$r/dev" "$r/proc" "$r/sys" "$r/run"
# The mark of a NixOS root: nixos-enter (a later rescue) refuses a root
# without it.
touch "$r/etc/NIXOS"
# GRUB reads the mounts from /etc/mtab.
ln -sfn /proc/mounts "$r/etc/mtab"

# What this script mounted, last first: dev proc sys run, or self for the
# root's bind mount onto itself at $r$r.
mounted=
made_self=
at() { if [ "$1" = self ]; then echo "$r$r"; else echo "$r/$1"; fi; }
cleanup() {
  for m in $mounted; do
    p=$(at "$m")
    umount -R "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || echo "could not unmount $p" >&2
  done
  [ -z "$made_self" ] || rmdir "$r$r" 2>/dev/null || true
}
trap cleanup EXIT
# bind D: the installer's /D at $r/D with everything mounted below it, as
# slaves: they see the installer's new mounts, but unmounting them (here
# or in the chroot) does not unmount the installer's.
bind() { mount --rbind "/$1" "$r/$1"; mounted="$1 $mounted"; mount --make-rslave "$r/$1"; }
bind dev
mount -t proc proc "$r/proc"; mounted="proc $mounted"
bind sys
if [ -d /sys/firmware/efi ] && ! mountpoint -q "$r/sys/firmware/efi/efivars" 2>/dev/null; then
  mount -t efivarfs efivarfs "$r/sys/firmware/efi/efivars" 2>/dev/null || true
fi
mount -t tmpfs -o mode=755 tmpfs "$r/run"; mounted="run $mounted"
# As nixos-install: the root also at its own path inside the chroot, so
# that paths under it named in the configuration (initrd secrets) are
# valid there. Only in a namespace of our own (a bind of a shared mount
# into itself would multiply mounts), and only where it takes one new
# directory, which goes afterwards.
if [ -n "${NIXOS_VIA_CHROOT_NS:-}" ] && [ "$r" != / ]; then
  up=$(dirname "$r$r")
  if [ -d "$up" ] && [ ! -L "$up" ] && { [ -d "$r$r" ] && [ ! -L "$r$r" ] || { [ ! -e "$r$r" ] && [ ! -L "$r$r" ] && mkdir "$r$r" && made_self=1; }; }; then
    mount --rbind "$r" "$r$r"; mounted="self $mounted"; mount --make-rslave "$r$r"
  fi
fi

`

// chrootRun activates the system in the chroot and installs its
// bootloader with switch-to-configuration boot.
const chrootRun = `# inroot P: P with its symlinks resolved inside $r, as the chroot will
# (store links are absolute: on the installer they would point into its
# own store), printed without the $r prefix.
inroot() {
  rest=$1 p= n=0
  while [ -n "$rest" ]; do
    c=${rest%%/*}
    case $rest in */*) rest=${rest#*/} ;; *) rest= ;; esac
    case $c in ''|.) continue ;; ..) p=${p%/*}; continue ;; esac
    if [ -L "$r$p/$c" ]; then
      n=$((n+1)); [ "$n" -le 40 ] || return 1
      l=$(readlink "$r$p/$c")
      case $l in /*) p= ;; esac
      rest=$l/$rest
    else
      p=$p/$c
    fi
  done
  echo "${p:-/}"
}
# has P: the system has the executable P.
has() { x=$(inroot "$1") && [ -f "$r$x" ] && [ -x "$r$x" ]; }

system=/nix/var/nix/profiles/system
if ! has "$system/bin/switch-to-configuration"; then
  echo "$r$system has no bin/switch-to-configuration" >&2
  exit 1
fi
export LOCALE_ARCHIVE="$system/sw/lib/locale/locale-archive"
if has "$system/activate"; then
  # As nixos-enter: activation creates /etc, users and /run/current-system;
  # its failure is not fatal.
  IN_NIXOS_ENTER=1 chroot "$r" "$system/activate" >&2 || echo "activation exited $? (ignored, as nixos-enter does)" >&2
fi
if has "$system/sw/bin/systemd-tmpfiles"; then
  # As nixos-enter: /tmp and the like; its complaints (no machine-id yet)
  # are hidden and its failure is not fatal.
  chroot "$r" "$system/sw/bin/systemd-tmpfiles" --create --remove -E 2>/dev/null || echo "systemd-tmpfiles exited $? (ignored, as nixos-enter does)" >&2
fi
NIXOS_INSTALL_BOOTLOADER=1 chroot "$r" "$system/bin/switch-to-configuration" boot
`
