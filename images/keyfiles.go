package images

import (
	"os"
	"strings"
)

// ReadAuthorizedKeys is the keys of an authorized_keys file, one a line,
// without blank lines and comments.
func ReadAuthorizedKeys(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			keys = append(keys, l)
		}
	}
	return keys, nil
}
