package nix

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/internal/nar"
)

// WriteRegistration writes infos in the text format `nix-store --load-db`
// reads and `nix-store --dump-db` prints; per path, one item a line:
//
//	<store path>
//	<narHash, base16 without prefix>
//	<narSize>
//	<deriver or an empty line>
//	<number of references>
//	<reference>...
func WriteRegistration(w io.Writer, infos []PathInfo) error {
	bw := bufio.NewWriter(w)
	for _, info := range infos {
		if err := info.Validate(); err != nil {
			return fmt.Errorf("write registration: %w", err)
		}
		fmt.Fprintf(bw, "%s\n%s\n%d\n%s\n%d\n", info.Path, info.NarHash.Base16(), info.NarSize, info.Deriver, len(info.References))
		for _, r := range info.References {
			fmt.Fprintf(bw, "%s\n", r)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write registration: %w", err)
	}
	return nil
}

// Registration returns the registration text of infos (see WriteRegistration).
func Registration(infos []PathInfo) (string, error) {
	var sb strings.Builder
	if err := WriteRegistration(&sb, infos); err != nil {
		return "", err
	}
	return sb.String(), nil
}

// ParseRegistration reads the format WriteRegistration writes. Like Nix, it
// accepts the hash in any form nar.ParseHash does.
func ParseRegistration(r io.Reader) ([]PathInfo, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return sc.Text(), true
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("parse registration: line %d: %s", line, fmt.Sprintf(format, args...))
	}
	var infos []PathInfo
	for {
		p, ok := next()
		if !ok {
			break
		}
		var info PathInfo
		info.Path = p
		fields := make([]string, 4)
		for i := range fields {
			if fields[i], ok = next(); !ok {
				return nil, fail("truncated record for %s", p)
			}
		}
		var err error
		if info.NarHash, err = nar.ParseHash(fields[0]); err != nil {
			return nil, fail("%v", err)
		}
		if info.NarSize, err = strconv.ParseUint(fields[1], 10, 64); err != nil {
			return nil, fail("narSize: %v", err)
		}
		info.Deriver = fields[2]
		n, err := strconv.Atoi(fields[3])
		if err != nil || n < 0 {
			return nil, fail("reference count %q", fields[3])
		}
		for i := 0; i < n; i++ {
			ref, ok := next()
			if !ok {
				return nil, fail("truncated references of %s", p)
			}
			info.References = append(info.References, ref)
		}
		if err := info.Validate(); err != nil {
			return nil, fail("%v", err)
		}
		infos = append(infos, info)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse registration: %w", err)
	}
	return infos, nil
}
