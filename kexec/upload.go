package kexec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// StagingPrefix starts the name of the directory that keeps a tarball's
// files on the host while they are uploaded.
const StagingPrefix = ".nixos-via-kexec-upload-"

// StagingDir is where Upload keeps tb's files while they travel: beside the
// work directory, so on the same filesystem (moving a file into the work
// directory is a rename, never a copy, which matters on tmpfs), and named
// after the tarball's digest, so that the next run with the same tarball
// resumes an upload that was cut.
func StagingDir(w WorkDir, tb *Tarball) string {
	key := tb.SHA256
	if len(key) < 16 {
		// No digest (not read from a local tarball): name it after the
		// files; their contents are checked before anything is reused.
		names := make([]string, 0, len(tb.Files))
		for n, size := range tb.Files {
			names = append(names, fmt.Sprintf("%s %d", n, size))
		}
		sort.Strings(names)
		sum := sha256.Sum256([]byte(strings.Join(names, "\n")))
		key = hex.EncodeToString(sum[:])
	}
	return path.Join(path.Dir(w.Path), StagingPrefix+key[:16])
}

// StagedBytes looks beside w for what earlier, cut uploads left: it removes
// the staging directories of other tarballs (a user who switched tarballs
// after a cut would otherwise leave them there for good, in RAM on a rescue
// system) and returns the bytes in tb's own, which the pre-flight counts as
// room already taken by this installer.
func StagedBytes(ctx context.Context, conn *target.Conn, w WorkDir, tb *Tarball) (int64, error) {
	keep := StagingDir(w, tb)
	script := fmt.Sprintf(`for d in %s/%s*; do
	[ -d "$d" ] || continue
	if [ "$d" = %s ]; then du -sk "$d" | awk '{print "staged=" $1}'; else rm -rf "$d"; fi
done
`, target.ShellQuote(path.Dir(w.Path)), StagingPrefix, target.ShellQuote(keep))
	out, err := conn.Script(ctx, target.Script{Body: script, AsLogin: true})
	if err != nil {
		return 0, fmt.Errorf("look for earlier uploads beside %s: %w", w.Path, err)
	}
	values := target.ParseValues(out)
	if !values.Has("staged") {
		return 0, nil
	}
	kib, ok := values.Int("staged")
	if !ok {
		return 0, fmt.Errorf("look for earlier uploads beside %s: du says %q", w.Path, "staged="+values.Get("staged"))
	}
	return kib * 1024, nil
}

// upFile is one file of the tarball on its way to the host.
type upFile struct {
	name   string // relative to the tarball's root: kexec/initrd
	local  string
	size   int64
	mode   os.FileMode
	offset int64 // bytes already on the host, checked
	done   bool  // complete on the host (sent, or checked there)
}

// part is the file's name in the staging directory.
func (f *upFile) part(staging string) string { return path.Join(staging, f.name+".part") }

// Upload copies the tarball's files into the fresh work directory w,
// keeping their modes. They travel into the staging directory (StagingDir)
// first, as name.part, each resumed where an earlier, cut upload left it
// when the bytes there match the file (sha256 on the host); once every file
// is complete and checked they are moved into w and the staging directory
// is removed. A file in w is therefore always complete. When the upload
// fails, the staging directory stays on the host (in RAM if it is on
// tmpfs) so that the next run sends only what is missing.
func Upload(ctx context.Context, conn *target.Conn, tb *Tarball, w WorkDir, events event.Sink) error {
	if events == nil {
		events = event.Discard{}
	}
	files, err := localFiles(tb)
	if err != nil {
		return &Error{Step: "upload", Err: err}
	}
	staging := StagingDir(w, tb)
	host, err := stagedState(ctx, conn, staging, files)
	if err != nil {
		return &Error{Step: "upload", Err: err}
	}
	if err := planResume(files, host, events); err != nil {
		return &Error{Step: "upload", Err: err}
	}
	for round := 1; ; round++ {
		sent, err := sendMissing(ctx, conn, staging, files, events)
		if err != nil {
			return &Error{Step: "upload", Err: fmt.Errorf("%w (what was sent stays in %s on the host: run again to go on from there)", err, staging)}
		}
		bad, err := verifyStaged(ctx, conn, staging, sent, host.haveSHA256)
		if err != nil {
			return &Error{Step: "upload", Err: err}
		}
		if len(bad) == 0 {
			break
		}
		if round == 2 {
			return &Error{Step: "upload", Err: fmt.Errorf("%s sent whole does not verify on the host: %s", bad[0].f.name, bad[0].why)}
		}
		for _, b := range bad {
			events.Emit(event.Event{Phase: phase.Kexec, Kind: event.Warn, Msg: fmt.Sprintf("%s does not verify on the host after the upload (%s): sending it again from zero", b.f.name, b.why),
				Data: map[string]string{"file": b.f.name, "offset": "0"}})
			b.f.offset, b.f.done = 0, false
		}
	}
	if err := moveStaged(ctx, conn, staging, w, files); err != nil {
		return &Error{Step: "upload", Err: err}
	}
	return nil
}

// localFiles lists the tarball's files in name order.
func localFiles(tb *Tarball) ([]*upFile, error) {
	var files []*upFile
	for n := range tb.Files {
		local := filepath.Join(tb.Dir, filepath.FromSlash(n))
		st, err := os.Stat(local)
		if err != nil {
			return nil, err
		}
		files = append(files, &upFile{name: n, local: local, size: st.Size(), mode: st.Mode().Perm()})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, nil
}

// hostState is what the staging directory holds: for file i, the size of
// its part and, when the host has sha256sum, the digest of those bytes.
type hostState struct {
	haveSHA256 bool
	size       map[int]int64
	sum        map[int]string
}

// stagedState makes the staging directory (private to the login user) and
// reports what earlier runs left in it.
func stagedState(ctx context.Context, conn *target.Conn, staging string, files []*upFile) (hostState, error) {
	var b strings.Builder
	b.WriteString("set -e\numask 077\n")
	fmt.Fprintf(&b, "mkdir -p %s\nchmod 700 %s\n", target.ShellQuote(staging), target.ShellQuote(staging))
	b.WriteString("h=; if command -v sha256sum >/dev/null 2>&1; then h=1; echo sha256sum; fi\n")
	for i, f := range files {
		p := target.ShellQuote(f.part(staging))
		fmt.Fprintf(&b, "mkdir -p %s\n", target.ShellQuote(path.Dir(f.part(staging))))
		fmt.Fprintf(&b, `if [ -f %s ]; then n=$(wc -c < %s); echo "size %d $n"; if [ -n "$h" ] && [ "$n" -gt 0 ] && [ "$n" -le %d ]; then echo "sum %d $(sha256sum < %s | cut -d' ' -f1)"; fi; fi`+"\n",
			p, p, i, f.size, i, p)
	}
	out, err := conn.Script(ctx, target.Script{Body: b.String(), AsLogin: true})
	if err != nil {
		return hostState{}, fmt.Errorf("look for an earlier upload in %s: %w", staging, err)
	}
	st := hostState{size: map[int]int64{}, sum: map[int]string{}}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 1 && fields[0] == "sha256sum":
			st.haveSHA256 = true
		case len(fields) == 3 && fields[0] == "size":
			i, _ := strconv.Atoi(fields[1])
			st.size[i], _ = strconv.ParseInt(fields[2], 10, 64)
		case len(fields) == 3 && fields[0] == "sum":
			i, _ := strconv.Atoi(fields[1])
			st.sum[i] = fields[2]
		}
	}
	return st, nil
}

// planResume sets each file's offset from what the host has: bytes that
// match the start of the file are kept; anything else is sent again.
func planResume(files []*upFile, host hostState, events event.Sink) error {
	info := func(kind event.Kind, f *upFile, msg string) {
		events.Emit(event.Event{Phase: phase.Kexec, Kind: kind, Msg: msg, Data: map[string]string{"file": f.name, "offset": strconv.FormatInt(f.offset, 10)}})
	}
	for i, f := range files {
		n, ok := host.size[i]
		f.offset, f.done = 0, false
		switch {
		case !ok || n == 0:
		case !host.haveSHA256:
			info(event.Info, f, fmt.Sprintf("the host has no sha256sum to check the %s of %s an earlier run sent: sending it again from zero", event.Bytes(n), f.name))
		case n > f.size:
			info(event.Warn, f, fmt.Sprintf("the host has %s of %s, which is only %s: sending it again from zero", event.Bytes(n), f.name, event.Bytes(f.size)))
		default:
			want, err := prefixSHA256(f.local, n)
			if err != nil {
				return err
			}
			if host.sum[i] != want {
				info(event.Warn, f, fmt.Sprintf("the %s of %s an earlier run left on the host do not match the file: sending it again from zero", event.Bytes(n), f.name))
				continue
			}
			f.offset, f.done = n, n == f.size
			if f.done {
				info(event.Info, f, fmt.Sprintf("%s is on the host already (%s)", f.name, event.Bytes(n)))
			} else {
				info(event.Info, f, fmt.Sprintf("resuming %s at %s of %s", f.name, event.Bytes(n), event.Bytes(f.size)))
			}
		}
	}
	return nil
}

// sendMissing sends every file's bytes from its offset on, reporting the
// bytes sent against the bytes missing, and returns the files it sent.
func sendMissing(ctx context.Context, conn *target.Conn, staging string, files []*upFile, events event.Sink) ([]*upFile, error) {
	var total, done int64
	var todo []*upFile
	for _, f := range files {
		if !f.done {
			todo = append(todo, f)
			total += f.size - f.offset
		}
	}
	progress := func(n int64) {
		events.Emit(event.Event{Phase: phase.Kexec, Kind: event.Progress, Msg: "upload installer", Done: n, Total: total, Unit: "bytes"})
	}
	for _, f := range todo {
		if err := sendFrom(ctx, conn, staging, f, func(sent, _ int64) { progress(done + sent) }); err != nil {
			return nil, err
		}
		done += f.size - f.offset
		f.offset, f.done = f.size, true
	}
	if len(todo) > 0 {
		progress(total)
	}
	return todo, nil
}

// sendFrom sends f from its offset to the end of its part on the host.
func sendFrom(ctx context.Context, conn *target.Conn, staging string, f *upFile, progress target.Progress) error {
	r, err := os.Open(f.local)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := r.Seek(f.offset, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s to %d: %w", f.local, f.offset, err)
	}
	return conn.UploadAppend(ctx, r, f.size-f.offset, f.part(staging), f.offset, progress)
}

// mismatch is a sent file whose bytes on the host are not the file's.
type mismatch struct {
	f   *upFile
	why string
}

// verifyStaged checks the size and, when the host has sha256sum, the
// digest of every file sent.
func verifyStaged(ctx context.Context, conn *target.Conn, staging string, sent []*upFile, haveSHA256 bool) ([]mismatch, error) {
	if len(sent) == 0 {
		return nil, nil
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	for i, f := range sent {
		p := target.ShellQuote(f.part(staging))
		fmt.Fprintf(&b, `echo "size %d $(wc -c < %s)"`+"\n", i, p)
		if haveSHA256 {
			fmt.Fprintf(&b, `echo "sum %d $(sha256sum < %s | cut -d' ' -f1)"`+"\n", i, p)
		}
	}
	out, err := conn.Script(ctx, target.Script{Body: b.String(), AsLogin: true})
	if err != nil {
		return nil, fmt.Errorf("check the upload in %s: %w", staging, err)
	}
	size, sum := map[int]int64{}, map[int]string{}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) != 3 {
			continue
		}
		i, _ := strconv.Atoi(fields[1])
		switch fields[0] {
		case "size":
			size[i], _ = strconv.ParseInt(fields[2], 10, 64)
		case "sum":
			sum[i] = fields[2]
		}
	}
	var bad []mismatch
	for i, f := range sent {
		if got, ok := size[i]; !ok || got != f.size {
			bad = append(bad, mismatch{f, fmt.Sprintf("%d bytes, want %d", got, f.size)})
			continue
		}
		if !haveSHA256 {
			continue
		}
		want, err := prefixSHA256(f.local, f.size)
		if err != nil {
			return nil, err
		}
		if sum[i] != want {
			bad = append(bad, mismatch{f, fmt.Sprintf("sha256 %s, want %s", sum[i], want)})
		}
	}
	return bad, nil
}

// moveStaged gives each file its mode, renames it into w and removes the
// staging directory.
func moveStaged(ctx context.Context, conn *target.Conn, staging string, w WorkDir, files []*upFile) error {
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, f := range files {
		p, dst := target.ShellQuote(f.part(staging)), path.Join(w.Path, f.name)
		fmt.Fprintf(&b, "mkdir -p %s\nchmod %o %s\nmv -f %s %s\n", target.ShellQuote(path.Dir(dst)), f.mode, p, p, target.ShellQuote(dst))
	}
	fmt.Fprintf(&b, "rm -rf %s\n", target.ShellQuote(staging))
	if _, err := conn.Script(ctx, target.Script{Body: b.String(), AsLogin: true}); err != nil {
		return fmt.Errorf("move the upload from %s to %s: %w", staging, w.Path, err)
	}
	return nil
}

// prefixSHA256 is the hex sha256 of the first n bytes of a local file.
func prefixSHA256(file string, n int64) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	got, err := io.Copy(h, io.LimitReader(f, n))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	if got != n {
		return "", fmt.Errorf("read %s: %d bytes, want %d", file, got, n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
