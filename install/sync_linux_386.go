package install

// sysSyncfs is syncfs(2) on linux/386, missing from package syscall's table.
const sysSyncfs = 344
