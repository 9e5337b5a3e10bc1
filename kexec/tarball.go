// Package kexec is the kexec phase, Run: pre-flight checks from the host's
// facts (preflight.go), the installer tarball (default release, URL or
// file, cached and pinned by sha256: tarball.go; fetched by the host itself
// where it can: remote.go), its upload with resume (upload.go) into a work
// directory (workdir.go), the throwaway access key when the installer would
// trust none of ours (accesskey.go), running its `run` script on the host
// (load.go), and reconnecting to the installer, which must present a key of
// the host's own SSH host key set (reconnect.go).
package kexec

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
)

// DefaultURL is the nixos-images release tarball nixos-anywhere uses for arch.
func DefaultURL(arch string) (string, error) {
	switch arch {
	case "x86_64", "aarch64":
		return "https://github.com/nix-community/nixos-images/releases/download/nixos-25.11/nixos-kexec-installer-noninteractive-" + arch + "-linux.tar.gz", nil
	}
	return "", fmt.Errorf("no installer image for %s: build one and pass --kexec FILE", arch)
}

// Tarball is an installer tarball, unpacked into a local directory.
type Tarball struct {
	Source string // URL or file as given
	File   string // the local tarball
	SHA256 string // hex digest of the tarball
	Bytes  int64  // tarball size
	Dir    string // unpacked: Dir/kexec/run, Dir/kexec/bzImage, Dir/kexec/initrd
	// Files are the regular files under Dir, relative, with sizes.
	Files       map[string]int64
	KernelBytes int64
	InitrdBytes int64 // compressed, as stored
	// InitrdUnpacked is the initrd's size once the new kernel has unpacked
	// it into RAM; InitrdEstimated says it was estimated, not measured.
	InitrdUnpacked  int64
	InitrdEstimated bool
}

// Fetch returns the tarball for src (a URL or a local file), downloading a
// URL into cacheDir once (keyed by the URL) and checking wantSHA256 when set.
// The tarball is unpacked into a fresh directory under cacheDir keyed by its
// digest, so a previous run never leaves a modified initrd behind.
func Fetch(ctx context.Context, src, cacheDir, wantSHA256 string, client *http.Client, events event.Sink) (*Tarball, error) {
	if events == nil {
		events = event.Discard{}
	}
	file := src
	if u, err := url.Parse(src); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		var err error
		file, err = download(ctx, src, cacheDir, wantSHA256, client, events)
		if err != nil {
			return nil, err
		}
	}
	sum, size, err := fileSHA256(file)
	if err != nil {
		return nil, fmt.Errorf("installer tarball: %w", err)
	}
	if wantSHA256 != "" && sum != strings.ToLower(wantSHA256) {
		return nil, fmt.Errorf("installer tarball %s: sha256 is %s, want %s (--kexec-sha256)", file, sum, wantSHA256)
	}
	tb := &Tarball{Source: src, File: file, SHA256: sum, Bytes: size}
	dir := filepath.Join(cacheDir, "unpacked", sum)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		if err := unpack(ctx, file, dir); err != nil {
			return nil, err
		}
	}
	tb.Dir = dir
	if err := tb.inspect(); err != nil {
		return nil, err
	}
	return tb, nil
}

// download fetches src into the cache unless a complete copy is there.
func download(ctx context.Context, src, cacheDir, wantSHA256 string, client *http.Client, events event.Sink) (string, error) {
	key := sha256.Sum256([]byte(src))
	name := hex.EncodeToString(key[:8]) + "-" + path.Base(strings.SplitN(src, "?", 2)[0])
	dst := filepath.Join(cacheDir, "downloads", name)
	if _, err := os.Stat(dst); err == nil {
		if wantSHA256 == "" {
			return dst, nil
		}
		if sum, _, err := fileSHA256(dst); err == nil && sum == strings.ToLower(wantSHA256) {
			return dst, nil
		}
		os.Remove(dst) // stale or corrupt: fetch again
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("installer cache: %w", err)
	}
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", src, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", src, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: %s", src, resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".download-*")
	if err != nil {
		return "", fmt.Errorf("installer cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	var done int64
	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := tmp.Write(buf[:n]); err != nil {
				tmp.Close()
				return "", fmt.Errorf("installer cache: %w", err)
			}
			done += int64(n)
			events.Emit(event.Event{Phase: phase.Kexec, Kind: event.Progress, Msg: "download installer", Done: done, Total: resp.ContentLength, Unit: "bytes"})
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			tmp.Close()
			return "", fmt.Errorf("download %s: %w", src, rerr)
		}
	}
	if resp.ContentLength > 0 && done != resp.ContentLength {
		tmp.Close()
		return "", fmt.Errorf("download %s: got %d of %d bytes", src, done, resp.ContentLength)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("installer cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("installer cache: %w", err)
	}
	return dst, nil
}

func fileSHA256(file string) (string, int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// decompressor opens the tarball's compression by its magic bytes.
func decompressor(ctx context.Context, file string) (io.Reader, func(), error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("installer tarball: %w", err)
	}
	br := bufio.NewReader(f)
	magic, _ := br.Peek(6)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("installer tarball %s: gzip: %w", file, err)
		}
		return zr, func() { zr.Close(); f.Close() }, nil
	case len(magic) >= 4 && string(magic[:4]) == "\x28\xb5\x2f\xfd":
		zr, err := zstd.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("installer tarball %s: zstd: %w", file, err)
		}
		return zr, func() { zr.Close(); f.Close() }, nil
	case len(magic) >= 6 && string(magic) == "\xfd7zXZ\x00":
		f.Close()
		cmd := exec.CommandContext(ctx, "xz", "-dc", file)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, nil, fmt.Errorf("installer tarball %s is xz-compressed and xz could not run: %w", file, err)
		}
		return out, func() { cmd.Process.Kill(); cmd.Wait() }, nil
	}
	return br, func() { f.Close() }, nil
}

// unpack extracts the tarball into dir (replaced atomically), refusing
// entries that would land outside it.
func unpack(ctx context.Context, file, dir string) error {
	r, closeFn, err := decompressor(ctx, file)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("installer cache: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".unpack-*")
	if err != nil {
		return fmt.Errorf("installer cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("installer tarball %s: %w", file, err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if strings.HasPrefix(name, "../") || name == ".." || path.IsAbs(name) {
			return fmt.Errorf("installer tarball %s: entry %q leaves the archive", file, h.Name)
		}
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if link := symlinkOnTheWay(tmp, name); link != "" {
			// Each link is checked where its name says it is; one that
			// goes through another link can point anywhere.
			return fmt.Errorf("installer tarball %s: entry %q goes through the symlink %q: refused, it could lead out of the archive", file, h.Name, link)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return fmt.Errorf("installer tarball %s: %s: %w", file, h.Name, err)
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if path.IsAbs(h.Linkname) || strings.HasPrefix(path.Clean(path.Join(path.Dir(name), h.Linkname)), "..") {
				return fmt.Errorf("installer tarball %s: symlink %q -> %q leaves the archive", file, h.Name, h.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("installer cache: %w", err)
	}
	return nil
}

// symlinkOnTheWay returns the first directory of name (slash-separated,
// relative to root) that is a symlink in root, or "".
func symlinkOnTheWay(root, name string) string {
	dir := ""
	parts := strings.Split(name, "/")
	for _, part := range parts[:len(parts)-1] {
		dir = path.Join(dir, part)
		if fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(dir))); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return dir
		}
	}
	return ""
}

// inspect checks the layout (kexec/run, kexec/bzImage, kexec/initrd) and
// measures what the host will need.
func (tb *Tarball) inspect() error {
	tb.Files = map[string]int64{}
	err := filepath.Walk(tb.Dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() && info.Name() != ".complete" {
			rel, _ := filepath.Rel(tb.Dir, p)
			tb.Files[filepath.ToSlash(rel)] = info.Size()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("installer tarball: %w", err)
	}
	if err := tb.checkLayout(); err != nil {
		return err
	}
	tb.KernelBytes = tb.Files["kexec/bzImage"]
	tb.InitrdBytes = tb.Files["kexec/initrd"]
	n, err := unpackedSize(filepath.Join(tb.Dir, "kexec", "initrd"))
	if err != nil {
		// Unknown compression: the new kernel will know, we estimate.
		tb.InitrdUnpacked, tb.InitrdEstimated = tb.InitrdBytes*4, true
	} else {
		tb.InitrdUnpacked = n
	}
	return nil
}

// checkLayout makes sure the tarball is a kexec installer.
func (tb *Tarball) checkLayout() error {
	var missing []string
	for _, f := range []string{"kexec/run", "kexec/bzImage", "kexec/initrd"} {
		if _, ok := tb.Files[f]; !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("installer tarball %s is not a kexec installer: it lacks %s (a nixos-images style tarball has a top-level kexec/ folder with run, bzImage and initrd)",
			tb.Source, strings.Join(missing, ", "))
	}
	return nil
}

// unpackedSize decompresses every concatenated segment of an initrd
// (gzip, zstd, xz through the local xz, or uncompressed cpio) and counts
// the bytes.
func unpackedSize(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var total int64
	for {
		magic, err := br.Peek(4)
		if err == io.EOF || len(magic) == 0 {
			return total, nil
		}
		if err != nil && len(magic) < 4 {
			// Trailing padding.
			return total, nil
		}
		switch {
		case magic[0] == 0x1f && magic[1] == 0x8b:
			zr, err := gzip.NewReader(br)
			if err != nil {
				return 0, err
			}
			zr.Multistream(false)
			n, err := io.Copy(io.Discard, zr)
			if err != nil {
				return 0, err
			}
			total += n
		case string(magic) == "\x28\xb5\x2f\xfd":
			// zstd frames until the next non-zstd byte: the decoder reads
			// the concatenated frames of one stream.
			zr, err := zstd.NewReader(br)
			if err != nil {
				return 0, err
			}
			n, err := io.Copy(io.Discard, zr)
			zr.Close()
			if err != nil {
				return 0, err
			}
			return total + n, nil
		case string(magic) == "\xfd7zX":
			// xz (the official nixos-images initrd): no xz decoder among
			// our dependencies, so the local xz counts, when there is one.
			// It reads the rest of the file: xz streams to the end.
			n, err := countXZ(br)
			if err != nil {
				return 0, err
			}
			return total + n, nil
		case string(magic) == "0707":
			n, err := io.Copy(io.Discard, br)
			return total + n, err
		case magic[0] == 0:
			br.Discard(1) // padding between segments
		default:
			return 0, errors.New("unknown initrd compression")
		}
	}
}

// countXZ decompresses r with the xz command and counts the bytes.
func countXZ(r io.Reader) (int64, error) {
	if _, err := exec.LookPath("xz"); err != nil {
		return 0, errors.New("xz initrd and no xz here to measure it")
	}
	cmd := exec.Command("xz", "-dc")
	cmd.Stdin = r
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("xz -dc: %w", err)
	}
	n, copyErr := io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("xz -dc: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return n, copyErr
}
