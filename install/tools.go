package install

// Tools are the commands the install and reboot steps call on the
// installer besides the shell's own (the agent brings the rest itself):
// checked before the disko phase touches a disk, so that an installer
// that could not finish the install is refused while the disks are intact.
func Tools() []string {
	return []string{"chroot", "mount", "umount", "mktemp", "readlink", "sync", "reboot"}
}
