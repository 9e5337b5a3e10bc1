package closure

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// The substitute protocol (text, uncompressed; see the package comment):
//
//	sender: "nixos-via-substitute 1\n"
//	        "cache <url>\n" for each cache, as configured (the agent ranks them)
//	        "option <name> <value>\n" for lookups, jobs, connect-timeout, stall-timeout
//	        per path "path <store path> <narHash> <narSize> <deriver or ->\n"
//	                 and "ref <store path>\n" for each reference
//	        "end\n"
//	agent:  "nixos-via-substituted 1\n"
//	        "got <store path>\n" once the path is in place and recorded
//	        "miss <store path> <reason>\n" when the agent gave it up (nothing of it is left)
//	        "end <got> <miss>\n"
const (
	substituteMagic   = "nixos-via-substitute 1"
	substitutedMagic  = "nixos-via-substituted 1"
	maxSubstituteLine = 64 << 10
)

// substituteRequest is what the sender asks the agent to substitute.
type substituteRequest struct {
	Caches         []string
	Lookups        int           // narinfo requests in flight
	Jobs           int           // NAR downloads in flight
	ConnectTimeout time.Duration // per connection to a cache
	StallTimeout   time.Duration // a response that brings less than minProgress this long is given up
	Paths          []nix.PathInfo
}

func (req substituteRequest) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, substituteMagic)
	for _, c := range req.Caches {
		fmt.Fprintf(bw, "cache %s\n", c)
	}
	fmt.Fprintf(bw, "option lookups %d\noption jobs %d\n", req.Lookups, req.Jobs)
	fmt.Fprintf(bw, "option connect-timeout %s\noption stall-timeout %s\n", req.ConnectTimeout, req.StallTimeout)
	for _, p := range req.Paths {
		deriver := p.Deriver
		if deriver == "" {
			deriver = "-"
		}
		fmt.Fprintf(bw, "path %s %s %d %s\n", p.Path, p.NarHash, p.NarSize, deriver)
		for _, r := range p.References {
			fmt.Fprintf(bw, "ref %s\n", r)
		}
	}
	fmt.Fprintln(bw, "end")
	return bw.Flush()
}

// readSubstituteRequest parses a request, checking every path-info as the
// stream's receiver checks a path header.
func readSubstituteRequest(br *bufio.Reader) (substituteRequest, error) {
	var req substituteRequest
	bad := func(format string, a ...any) (substituteRequest, error) {
		return req, fmt.Errorf("substitute request: %s", fmt.Sprintf(format, a...))
	}
	line, err := readLine(br)
	if err != nil && err != io.EOF {
		return bad("read: %v", err)
	}
	if line != substituteMagic {
		return bad("first line %q, want %q", truncate(line), substituteMagic)
	}
	finish := func() error {
		if n := len(req.Paths); n > 0 {
			if err := req.Paths[n-1].Validate(); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		line, err := readLine(br)
		if err == io.EOF {
			return bad("ended without \"end\"")
		}
		if err != nil {
			return bad("read: %v", err)
		}
		if line == "end" {
			if err := finish(); err != nil {
				return bad("%v", err)
			}
			if len(req.Caches) == 0 {
				return bad("no cache")
			}
			return req, nil
		}
		kind, rest, _ := strings.Cut(line, " ")
		f := strings.Fields(rest)
		switch {
		case kind == "cache" && len(f) == 1:
			if _, err := cacheBase(f[0]); err != nil {
				return bad("%v", err)
			}
			req.Caches = append(req.Caches, f[0])
		case kind == "option" && len(f) == 2:
			if err := req.setOption(f[0], f[1]); err != nil {
				return bad("%v", err)
			}
		case kind == "path" && len(f) == 4:
			if err := finish(); err != nil {
				return bad("%v", err)
			}
			info := nix.PathInfo{Path: f[0]}
			if info.NarHash, err = nar.ParseHash(f[1]); err != nil {
				return bad("%s: %v", f[0], err)
			}
			if info.NarSize, err = strconv.ParseUint(f[2], 10, 64); err != nil || info.NarSize == 0 || info.NarSize > MaxNarSize {
				return bad("%s: narSize %q out of range", f[0], f[2])
			}
			if f[3] != "-" {
				info.Deriver = f[3]
			}
			info.References = []string{}
			req.Paths = append(req.Paths, info)
		case kind == "ref" && len(f) == 1 && len(req.Paths) > 0:
			p := &req.Paths[len(req.Paths)-1]
			if len(p.References) >= maxReferences {
				return bad("%s: more than %d references", p.Path, maxReferences)
			}
			p.References = append(p.References, f[0])
		default:
			return bad("line %q", truncate(line))
		}
	}
}

func (req *substituteRequest) setOption(name, value string) error {
	switch name {
	case "lookups", "jobs":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 || n > 256 {
			return fmt.Errorf("option %s %q: want 0 to 256", name, value)
		}
		if name == "lookups" {
			req.Lookups = n
		} else {
			req.Jobs = n
		}
	case "connect-timeout", "stall-timeout":
		d, err := time.ParseDuration(value)
		if err != nil || d < 0 {
			return fmt.Errorf("option %s %q: want a duration", name, value)
		}
		if name == "connect-timeout" {
			req.ConnectTimeout = d
		} else {
			req.StallTimeout = d
		}
	default:
		return fmt.Errorf("unknown option %q", name)
	}
	return nil
}

// substituteAnswer is one line of the agent's answer.
type substituteAnswer struct {
	got    bool
	path   string
	reason string // for a miss
}

// readSubstituteAnswers reads the agent's answer from br, calling each for
// every got or miss line, and returns the end line's counts after checking
// them against the lines.
func readSubstituteAnswers(br *bufio.Reader, each func(substituteAnswer)) (got, miss int, err error) {
	line, err := readLine(br)
	if err != nil && err != io.EOF {
		return 0, 0, fmt.Errorf("substitute answer: %w", err)
	}
	if line != substitutedMagic {
		return 0, 0, fmt.Errorf("substitute answer: first line %q, want %q", truncate(line), substitutedMagic)
	}
	for {
		line, err := readLine(br)
		if err == io.EOF {
			return got, miss, fmt.Errorf("substitute answer: ended without \"end\" after %d got, %d missed", got, miss)
		}
		if err != nil {
			return got, miss, fmt.Errorf("substitute answer: %w", err)
		}
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "got", "miss":
			p, reason, _ := strings.Cut(rest, " ")
			if err := nix.CheckStorePath(p); err != nil {
				return got, miss, fmt.Errorf("substitute answer: %w", err)
			}
			a := substituteAnswer{got: kind == "got", path: p, reason: reason}
			if a.got {
				got++
			} else {
				miss++
			}
			each(a)
		case "end":
			f := strings.Fields(rest)
			if len(f) != 2 || f[0] != strconv.Itoa(got) || f[1] != strconv.Itoa(miss) {
				return got, miss, fmt.Errorf("substitute answer: %q after %d got, %d missed", truncate(line), got, miss)
			}
			return got, miss, nil
		default:
			return got, miss, fmt.Errorf("substitute answer: line %q", truncate(line))
		}
	}
}
