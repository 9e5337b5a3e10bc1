// Package disko renders disko layouts (the value of disko.devices) natively:
// layout JSON → validated, default-resolved model → ordered plan → POSIX sh.
//
// Parse reads the JSON that `nix eval --json` prints for disko.devices
// (raw, or already resolved by disko's module system), fills every default
// exactly as disko does (partition labels and their 36-byte hashing,
// priorities, ends, LUKS key precedence, bcachefs UUIDs, …) and validates
// it; each problem names its JSON path, e.g.
// `disk.main.content.partitions.root.content.format: unknown filesystem "ext5"`.
//
// (*Layout).Plan and (*Layout).Script produce the steps of a mode
// (destroy,format,mount; format; format,mount; mount; unmount; destroy) in
// disko's order: devices in dependency order (nixpkgs' toposort), mounts in
// NixOS' fsBefore order, unmounts in reverse. Step.Argv names devices as
// disko does (/dev/disk/by-partlabel/…); the script resolves them at run
// time and works without udev: partitions are found through the udev link,
// their PARTUUID or GPT name on the expected parent disk (blkid -p) or the
// partition number in sysfs, and are checked against their GPT name before
// use. Every name is compared in the form the tool stored it (names.go):
// sgdisk's label as given, parted's escaped mkpart word for a legacy gpt
// table; labels with a ':' (sgdisk cuts the name there) and VG, LV, md and
// LUKS names the tools reject or mangle in /dev are refused by Parse; whole
// disks named by /dev/disk/by-diskseq or by-id are found in sysfs; every wait
// has a deadline (DISKO_DEVICE_TIMEOUT); udevadm is used only when udev runs;
// libdevmapper is told to create its own nodes (DM_DISABLE_UDEV). The script
// runs under dash, bash and busybox sh (it prefers util-linux tools over
// busybox applets when both exist) and never traces commands: passphrases
// only travel through pipes. Prompts (destroy confirmation, LUKS
// passphrases) first open /dev/tty, so without a controlling terminal the
// script stops with its own message.
//
// Format only touches what looks empty: a device holding another signature
// than the one the layout wants stops the script instead of being formatted
// over. The destroy modes ask for confirmation unless the script's first
// argument is --yes-wipe-all-disks; WipeTargets lists the disks they wipe.
//
// Upstream disko bugs fixed here (each has a test naming it; Step.Fix says
// which step differs): swap partitions are activated in mount mode (§5.1,
// PR #1057 regression; DISKO_SKIP_SWAP=1 skips it); `sgdisk -h` gets the
// device as its own word (§5.2) and hybrid MBR entries are numbered as
// sgdisk lays them out; every LUKS container is opened in mount mode, not
// only the last one per disk (§5.3, #1263); LUKS inside an LV is opened and
// closed (§5.4); encrypted zvol keys use the full dataset name (§5.5); a
// zpool member with a foreign signature stops the script (§5.7); luksAddKey
// is not repeated on every format (§5.9); md arrays are assembled in mount
// mode (#705, PR #1149); by-partlabel paths are escaped as udev names the
// links (lower-case \xhh, UTF-8 kept, '/' escaped), not as disko does, so a
// label like "a^b" or "é" names a link that exists, in the script and in
// fileSystems; zpool topology members expand to the hashed label of long
// disk names. Deliberate differences: `vgchange -a y|n VG` names
// the VG instead of touching every VG of the host; mount targets are
// created with mkdir -p instead of `-o X-mount.mkdir` (busybox mount has no
// X-mount options); members of a VG/array/pool are known at render time, so
// the script needs no member files.
//
// (*Layout).Needs says what a mode's script needs on the target before
// anything destructive runs: the external commands it calls (read from the
// rendered steps and the prelude helpers they use, so the list follows the
// renderer), the LUKS key and password files with their JSON paths, the
// LUKS containers that ask for a passphrase on the terminal, and per disk
// the smallest size its partition table fits on.
//
// (*Layout).NixOS is the configuration the layout implies (fileSystems,
// swapDevices, boot.initrd.luks.devices, boot.loader.grub.devices,
// boot.swraid, boot.initrd.kernelModules, boot.resumeDevice), equal to
// disko's. The package is pure: it imports only the standard library and
// never runs anything; its tests run the scripts on loop devices.
package disko
