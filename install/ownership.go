package install

// Ownership is one --chown PATH OWNER: Path, inside the installed root,
// is given to Owner recursively after the extra files are copied.
type Ownership struct {
	Path  string
	Owner string // user[:group], by name or number
}
