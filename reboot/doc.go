// Package reboot is the reboot phase: unmount the installed root (export
// ZFS pools), reboot the installer properly, and wait for the installed
// system as its configuration says it comes up (BootConfig, read from the
// configuration with the build), checking its boot id and
// /run/current-system before it records the new host key. Run is the
// phase; it reports progress through an event.Sink and never prints.
// While the host reboots, Run keeps a Pending note on this machine; a
// later run that finds it (a run stopped in the reboot wait) does the
// same check with Confirm.
package reboot
