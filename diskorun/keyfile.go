package diskorun

// KeyFile is a local key file the disko script reads on the host
// (--disk-encryption-keys REMOTE LOCAL): Local is copied to Remote in the
// installer's RAM before the script runs.
type KeyFile struct {
	Remote string // path on the host
	Local  string // file (or pipe) on this machine
}
