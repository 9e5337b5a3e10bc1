package closure

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
// are sent paths, never beside them. (`agent receive` answers a query that
// comes first on its stdin the same way: see answerQuery.)
func AnswerQuery(ctx context.Context, r io.Reader, w io.Writer, root string) error {
	return answerQuery(ctx, bufio.NewReaderSize(r, 64<<10), w, root)
}

// answerQuery is AnswerQuery reading from br, never past the query's "end"
// line, so what follows it in br (a closure stream) is left for the caller.
func answerQuery(ctx context.Context, br *bufio.Reader, w io.Writer, root string) error {
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
	if line, err := readLine(br); err != nil && err != io.EOF {
		return fmt.Errorf("query: read: %w", err)
	} else if line != queryMagic {
		return fmt.Errorf("query: first line %q, want %q", line, queryMagic)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, validMagic)
	count := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, err := readLine(br)
		if err == io.EOF {
			return fmt.Errorf("query: input ended without \"end\"")
		}
		if err != nil {
			return fmt.Errorf("query: read: %w", err)
		}
		if line == "end" {
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
	fmt.Fprintf(bw, "end %d\n", count)
	return bw.Flush()
}

// startsWithQuery says whether br's input begins with a query rather than a
// closure stream (which begins with a zstd frame). It waits for the first
// bytes.
func startsWithQuery(br *bufio.Reader) bool {
	b, _ := br.Peek(len(queryMagic) + 1)
	return string(b) == queryMagic+"\n"
}

// readLine reads one line of the query protocol without its newline. A line
// longer than br's buffer is an error: no store path and hash is that long.
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	switch {
	case err == nil:
		return string(b[:len(b)-1]), nil
	case err == bufio.ErrBufferFull:
		return "", fmt.Errorf("line longer than %d bytes", br.Size())
	case err == io.EOF && len(b) > 0:
		return "", io.ErrUnexpectedEOF
	}
	return "", err
}

// readValid parses the agent's answer, returning the set of valid paths. It
// reads br no further than the answer's "end" line.
func readValid(br *bufio.Reader) (map[string]bool, error) {
	if line, err := readLine(br); err != nil && err != io.EOF {
		return nil, fmt.Errorf("query answer: %w", err)
	} else if line != validMagic {
		return nil, fmt.Errorf("query answer: first line %q, want %q", line, validMagic)
	}
	valid := map[string]bool{}
	for {
		line, err := readLine(br)
		if err == io.EOF {
			return nil, fmt.Errorf("query answer: ended without \"end\" after %d paths", len(valid))
		}
		if err != nil {
			return nil, fmt.Errorf("query answer: %w", err)
		}
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
}
