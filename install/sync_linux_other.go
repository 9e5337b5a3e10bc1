//go:build linux && !amd64 && !386

package install

import "syscall"

const sysSyncfs = syscall.SYS_SYNCFS
