package kexec

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/nixos-via/nixos-via/internal/target"
)

// IsURL says src is an http(s) URL rather than a local file.
func IsURL(src string) bool {
	u, err := url.Parse(src)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Probe is what the host saw when it asked for the tarball's URL.
type Probe struct {
	OK    bool
	Bytes int64 // Content-Length, -1 unknown
	Why   string
}

// ProbeDownload asks whether the host itself can fetch src (curl or wget,
// and the network), without downloading it: a host in a data centre is
// usually much closer to the release than we are.
func ProbeDownload(ctx context.Context, conn *target.Conn, f *target.Facts, src string) Probe {
	if !f.Tools.Tar {
		return Probe{Why: "the host has no tar to unpack it"}
	}
	var cmd string
	switch {
	case f.Tools.Curl:
		cmd = "curl -fsSLI --max-time 20 " + target.ShellQuote(src)
	case f.Tools.Wget:
		// Not --spider nor -T: busybox's wget crashes with them (the
		// context bounds the wait instead). Read one byte
		// and stop; -S puts the headers (Content-Length) on stderr.
		cmd = `t=$(mktemp) && n=$(wget -S -O - ` + target.ShellQuote(src) + ` 2>"$t" | head -c 1 | wc -c); cat "$t"; rm -f "$t"; [ "$n" -gt 0 ]`
	default:
		return Probe{Why: "the host has neither curl nor wget"}
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := conn.Output(pctx, cmd, nil)
	if err != nil {
		return Probe{Why: fmt.Sprintf("the host cannot fetch it: %v", err)}
	}
	p := Probe{OK: true, Bytes: -1}
	// The last Content-Length wins (redirects print several header blocks).
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && strings.EqualFold(k, "content-length") {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				p.Bytes = n
			}
		}
	}
	return p
}

// DownloadOnHost has the host fetch src into w, check its sha256 when
// wantSHA256 is set, and unpack it there. It returns the tarball as the
// host has it (Dir is empty: nothing is local). The unpacked initrd size
// cannot be measured here, so it is estimated.
func DownloadOnHost(ctx context.Context, conn *target.Conn, f *target.Facts, src, wantSHA256 string, w WorkDir) (*Tarball, error) {
	name := path.Base(strings.SplitN(src, "?", 2)[0])
	flag := "-z"
	switch {
	case strings.HasSuffix(name, ".xz"):
		flag = "-J"
	case strings.HasSuffix(name, ".zst"):
		flag = "--zstd"
	case strings.HasSuffix(name, ".tar"):
		flag = ""
	}
	fetch := "curl -fsSL --retry 3 -o installer.tar " + target.ShellQuote(src)
	if !f.Tools.Curl {
		fetch = "wget -q -O installer.tar " + target.ShellQuote(src)
	}
	script := fmt.Sprintf(`set -e
cd %s
%s
echo "sha256=$(sha256sum installer.tar | cut -d' ' -f1)"
echo "bytes=$(wc -c < installer.tar)"
tar %s -xf installer.tar
rm -f installer.tar
find kexec -type f | while read -r p; do echo "file=$(wc -c < "$p") $p"; done
`, target.ShellQuote(w.Path), fetch, flag)
	var stderr strings.Builder
	out, err := conn.Script(ctx, target.Script{Body: script, AsLogin: true, Stderr: &stderr})
	if err != nil {
		return nil, &Error{Step: "download", Err: fmt.Errorf("the host could not fetch and unpack %s: %w", src, err), Output: stderr.String()}
	}
	values := target.ParseValues(out)
	tb := &Tarball{Source: src, SHA256: values.Get("sha256"), Files: map[string]int64{}}
	tb.Bytes, _ = values.Int("bytes")
	for _, f := range values["file"] {
		size, p, ok := strings.Cut(strings.TrimSpace(f), " ")
		if n, err := strconv.ParseInt(size, 10, 64); ok && err == nil {
			tb.Files[p] = n
		}
	}
	if wantSHA256 != "" && tb.SHA256 != strings.ToLower(wantSHA256) {
		return nil, &Error{Step: "download", Err: fmt.Errorf("the tarball the host fetched from %s has sha256 %s, want %s (--kexec-sha256)", src, tb.SHA256, wantSHA256)}
	}
	if err := tb.checkLayout(); err != nil {
		return nil, err
	}
	tb.KernelBytes = tb.Files["kexec/bzImage"]
	tb.InitrdBytes = tb.Files["kexec/initrd"]
	tb.InitrdUnpacked, tb.InitrdEstimated = tb.InitrdBytes*4, true
	if n, ok := measureInitrdOnHost(ctx, conn, w); ok {
		tb.InitrdUnpacked, tb.InitrdEstimated = n, false
	}
	return tb, nil
}

// measureInitrdOnHost decompresses the host's kexec/initrd there, with the
// host's own gzip, zstd or xz (chosen by the first bytes), and counts the
// bytes: what the new kernel will unpack into RAM. ok is false when the host
// lacks the tool, the initrd mixes formats, or it takes too long; the
// caller then estimates.
func measureInitrdOnHost(ctx context.Context, conn *target.Conn, w WorkDir) (int64, bool) {
	// The decompressor's status goes through a file: a pipeline's status is
	// wc's, and pipefail is not POSIX.
	const script = `i=kexec/initrd
m=$(od -An -tx1 -N4 "$i" | tr -d ' \n')
case $m in
1f8b*) t=gzip ;;
28b52ffd) t=zstd ;;
fd377a58) t=xz ;;
*) exit 3 ;;
esac
command -v $t >/dev/null 2>&1 || exit 4
n=$( { $t -dc < "$i"; echo $? > .measure; } | wc -c)
s=$(cat .measure); rm -f .measure
[ "$s" = 0 ] || exit 5
echo "unpacked=$n"
`
	mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := conn.Script(mctx, target.Script{Body: "cd " + target.ShellQuote(w.Path) + " || exit 1\n" + script, AsLogin: true, Stderr: io.Discard})
	if err != nil {
		return 0, false
	}
	n, ok := target.ParseValues(out).Int("unpacked")
	if !ok || n <= 0 {
		return 0, false
	}
	return n, true
}
