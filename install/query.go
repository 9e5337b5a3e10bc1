package install

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// The query protocol (text, uncompressed; it is small):
//
//	sender:  "nixos-via-query 1\n", then per path "<store path> <narHash>\n", then "end\n"
//	agent:   "nixos-via-valid 1\n", then each valid path "<store path>\n", then "end <count>\n"
const (
	queryMagic = "nixos-via-query 1"
	validMagic = "nixos-via-valid 1"
)

func writeQuery(w io.Writer, infos []nix.PathInfo) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, queryMagic)
	for _, info := range infos {
		fmt.Fprintf(bw, "%s %s\n", info.Path, info.NarHash)
	}
	fmt.Fprintln(bw, "end")
	return bw.Flush()
}

// AnswerQuery is the agent side of the query: it reads the sender's list of
// wanted paths from r and writes to w those already valid under root (present
// in the store, with a receive record whose narHash matches). It also removes
// temporaries that a killed receiver left behind, so run it before receivers
// start, never beside them.
func AnswerQuery(ctx context.Context, r io.Reader, w io.Writer, root string) error {
	l, err := newLayout(root)
	if err != nil {
		return err
	}
	if err := l.removeStaleTemps(); err != nil {
		return err
	}
	recs, err := l.records()
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() || sc.Text() != queryMagic {
		return fmt.Errorf("query: first line %q, want %q", sc.Text(), queryMagic)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, validMagic)
	count := 0
	ended := false
	for sc.Scan() {
		if err := ctx.Err(); err != nil {
			return err
		}
		line := sc.Text()
		if line == "end" {
			ended = true
			break
		}
		p, h, ok := strings.Cut(line, " ")
		if !ok {
			return fmt.Errorf("query: line %q: want \"<store path> <narHash>\"", line)
		}
		if err := nix.CheckStorePath(p); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		want, err := nar.ParseHash(h)
		if err != nil {
			return fmt.Errorf("query: %s: %w", p, err)
		}
		if l.valid(recs, p, want) {
			fmt.Fprintln(bw, p)
			count++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("query: read: %w", err)
	}
	if !ended {
		return fmt.Errorf("query: input ended without \"end\"")
	}
	fmt.Fprintf(bw, "end %d\n", count)
	return bw.Flush()
}

// readValid parses the agent's answer, returning the set of valid paths.
func readValid(r io.Reader) (map[string]bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() || sc.Text() != validMagic {
		return nil, fmt.Errorf("query answer: first line %q, want %q", sc.Text(), validMagic)
	}
	valid := map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "end "); ok {
			count, err := strconv.Atoi(n)
			if err != nil || count != len(valid) {
				return nil, fmt.Errorf("query answer: %q after %d paths", line, len(valid))
			}
			return valid, nil
		}
		if err := nix.CheckStorePath(line); err != nil {
			return nil, fmt.Errorf("query answer: %w", err)
		}
		valid[line] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("query answer: %w", err)
	}
	return nil, fmt.Errorf("query answer: ended without \"end\" after %d paths", len(valid))
}
