package install

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
)

// DefaultRoot is where the installer mounts the new system.
const DefaultRoot = "/mnt"

// rootOr is root, or DefaultRoot when root is empty.
func rootOr(root string) string {
	if root == "" {
		return DefaultRoot
	}
	return root
}

func sinkOr(s event.Sink) event.Sink {
	if s == nil {
		return event.Discard{}
	}
	return s
}

// report sends one line of a step to s.
func report(s event.Sink, kind event.Kind, format string, a ...any) {
	s.Emit(event.Event{Phase: phase.Install, Kind: kind, Msg: fmt.Sprintf(format, a...)})
}

// UploadAgent uploads the local agent binary to remote (mode 0755) and
// checks its sha256 there. An agent already there with that sha256 (the
// disko phase uploaded it for a prebuilt script's closure, or a resumed
// run did) is kept.
func UploadAgent(ctx context.Context, conn *target.Conn, sink event.Sink, local, remote string) error {
	data, err := os.ReadFile(local)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	if out, err := conn.Output(ctx, "[ -x "+target.ShellQuote(remote)+" ] && sha256sum "+target.ShellQuote(remote)+" || true", nil); err == nil {
		if got := strings.Fields(string(out)); len(got) > 0 && got[0] == want {
			return nil
		}
	}
	report(sinkOr(sink), event.Step, "uploading the agent")
	if _, err := conn.Output(ctx, "mkdir -p "+target.ShellQuote(filepath.Dir(remote)), nil); err != nil {
		return fmt.Errorf("upload %s: %w", remote, err)
	}
	if err := conn.Upload(ctx, bytes.NewReader(data), int64(len(data)), remote, 0o755, nil); err != nil {
		return err
	}
	out, err := conn.Output(ctx, "sha256sum "+target.ShellQuote(remote), nil)
	if err != nil {
		return fmt.Errorf("check %s: %w", remote, err)
	}
	if got := strings.Fields(string(out)); len(got) == 0 || got[0] != want {
		return fmt.Errorf("upload %s: sha256 on the target is %q, want %s", remote, strings.TrimSpace(string(out)), want)
	}
	return nil
}

// RegisterOptions say what Register records under Root.
type RegisterOptions struct {
	Root     string         // the installed system's root; "" is DefaultRoot
	NixStore string         // the system's own nix-store, run in a chroot
	Toplevel string         // the system the profile points to
	Closure  []nix.PathInfo // the paths to register
}

// Register loads the closure's registration into the installed system's
// Nix database with the system's own nix-store (in a chroot, so the schema
// matches), and points the system profile at the toplevel: a new
// generation, unless the current one already is this system.
func Register(ctx context.Context, conn Host, sink event.Sink, o RegisterOptions) error {
	sink = sinkOr(sink)
	report(sink, event.Step, "registering the closure and setting the system profile")
	reg, err := nix.Registration(o.Closure)
	if err != nil {
		return err
	}
	script := fmt.Sprintf(`set -e
r=%[3]s
mkdir -p "$r/tmp" "$r/nix/var/nix/profiles" "$r/nix/var/nix/gcroots" "$r/etc"
chmod 1777 "$r/tmp"
chroot "$r" %[1]s --load-db
# The Nix database is now the record of what is valid; the agent's own
# records were only for resuming the copy.
rm -rf "$r/nix/var/nixos-via"
# As Nix leaves a store it manages (NixOS's nixbld group is gid 30000).
chown root:30000 "$r/nix/store" && chmod 1775 "$r/nix/store"
cd "$r/nix/var/nix/profiles"
n=0
for l in system-*-link; do
  [ -L "$l" ] || continue
  g=${l#system-}; g=${g%%-link}
  case "$g" in *[!0-9]*) continue;; esac
  [ "$g" -gt "$n" ] && n=$g
  [ "$(readlink "$l")" = %[2]s ] && [ "$(readlink system)" = "$l" ] && { echo "profile: generation $g is already this system"; exit 0; }
done
n=$((n+1))
ln -sfn %[2]s "system-$n-link"
ln -sfn "system-$n-link" system
echo "profile: system generation $n"
`, target.ShellQuote(o.NixStore), target.ShellQuote(o.Toplevel), target.ShellQuote(rootOr(o.Root)))
	// Its output is reported line by line, empty lines left out.
	_, err = conn.Script(ctx, target.Script{Name: "register", Body: script, Input: strings.NewReader(reg), OnLine: func(line string) {
		if line != "" {
			report(sink, event.Info, "%s", line)
		}
	}})
	return err
}

// ExtraFiles copies the local directory dir into root as a tar: every
// entry owned by root, modes kept, symlinks as links; root ends up 0755.
func ExtraFiles(ctx context.Context, conn Host, sink event.Sink, dir, root string) error {
	root = rootOr(root)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--extra-files %s: not a directory", dir)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeRootTar(pw, dir)) }()
	report(sinkOr(sink), event.Step, "copying extra files from %s", dir)
	q := target.ShellQuote(root)
	if _, err := conn.Output(ctx, "tar -C "+q+" -xf - && chmod 755 "+q, pr); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("--extra-files %s: %w", dir, err)
	}
	return nil
}

// writeRootTar writes dir's tree as a tar with every entry owned by 0:0.
func writeRootTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = "./" + filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "root", "root"
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			file, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, file)
			file.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Chown runs chown -R owner on path inside root (path is as the installed
// system sees it, e.g. /home/alice).
func Chown(ctx context.Context, conn Host, sink event.Sink, root, path, owner string) error {
	full := filepath.Join(rootOr(root), path)
	if _, err := conn.Output(ctx, fmt.Sprintf("chown -R %s %s", target.ShellQuote(owner), target.ShellQuote(full)), nil); err != nil {
		return fmt.Errorf("--chown %s %s: %w", path, owner, err)
	}
	report(sinkOr(sink), event.Info, "chown -R %s %s", owner, full)
	return nil
}

// CopyHostKeys copies the installer's /etc/ssh/ssh_host_* into root, so
// the installed system presents the host's own keys. A key already in
// root is kept.
func CopyHostKeys(ctx context.Context, conn Host, sink event.Sink, root string) error {
	script := fmt.Sprintf(`set -e
r=%s
mkdir -m 755 -p "$r/etc/ssh"
for k in /etc/ssh/ssh_host_*; do
  [ -e "$k" ] || continue
  if [ -e "$r$k" ]; then echo "kept $r$k"; else cp -a "$k" "$r$k"; echo "copied $k"; fi
done
`, target.ShellQuote(rootOr(root)))
	return runScript(ctx, conn, sinkOr(sink), "copy host keys", script)
}

// RemoveKeyFiles removes the disk encryption key files from the installer.
func RemoveKeyFiles(ctx context.Context, conn Host, sink event.Sink, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	var rm []string
	for _, p := range paths {
		rm = append(rm, target.ShellQuote(p))
	}
	if _, err := conn.Output(ctx, "rm -f "+strings.Join(rm, " "), nil); err != nil {
		return fmt.Errorf("remove the key files from the installer: %w", err)
	}
	report(sinkOr(sink), event.Info, "removed the key files from the installer")
	return nil
}

// runScript runs a shell script as root on the target, reporting each line
// it prints as an Info event of the install phase (target.Conn.Script with
// OnLine).
func runScript(ctx context.Context, conn Host, sink event.Sink, name, script string) error {
	_, err := conn.Script(ctx, target.Script{Name: name, Body: script, OnLine: func(line string) { report(sink, event.Info, "%s", line) }})
	return err
}
