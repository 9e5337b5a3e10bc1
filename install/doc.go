// Package install is the install phase, Run: the steps that run on the
// target once disko has mounted the new file systems under the root
// (DefaultRoot, /mnt), around the copy of the system's closure into its
// store (package closure: fetched from binary caches by the agent where
// Options.Substitute names them, streamed otherwise): uploading
// the agent (UploadAgent), loading the closure's registration into the
// system's Nix database and setting the system profile (Register), extra
// files, ownership, host keys, the bootloader from a chroot, and removing
// the disk key files (NIXOS-INSTALL.md compares them with nixos-install step
// by step). Rebooting into the installed system is package reboot's.
package install
