package install

// sysSyncfs is syncfs(2) on linux/amd64, missing from package syscall's table.
const sysSyncfs = 306
