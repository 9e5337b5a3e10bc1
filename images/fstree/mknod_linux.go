package fstree

import (
	"os"
	"syscall"
)

func mknodChar(dst string, perm, major, minor uint32) error {
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	dev := (major&0xfff)<<8 | (minor & 0xff) | (minor&^0xff)<<12
	return syscall.Mknod(dst, syscall.S_IFCHR|perm&0o7777, int(dev))
}
