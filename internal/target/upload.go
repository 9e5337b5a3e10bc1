package target

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/pkg/sftp"

	"github.com/nixos-via/nixos-via/internal/tail"
)

// Progress is told how many bytes of an upload are done so far.
type Progress func(done, total int64)

// Upload writes r (size bytes; -1 if unknown) to remote with mode, as the
// login user. It uses SFTP and falls back to `cat >` when the host has no
// sftp-server. The file appears complete or not at all: data goes to a
// temporary name that is renamed at the end.
func (c *Conn) Upload(ctx context.Context, r io.Reader, size int64, remote string, mode os.FileMode, progress Progress) error {
	tmp := path.Join(path.Dir(remote), "."+path.Base(remote)+".part")
	pr := &progressReader{r: r, total: size, fn: progress}
	err := c.uploadSFTP(ctx, pr, tmp, remote, mode)
	if err == errNoSFTP {
		if pr.done > 0 {
			return fmt.Errorf("upload %s: sftp failed after %d bytes", remote, pr.done)
		}
		err = c.uploadCat(ctx, pr, tmp, remote, mode)
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", remote, err)
	}
	return nil
}

// UploadFile uploads a local file.
func (c *Conn) UploadFile(ctx context.Context, local, remote string, mode os.FileMode, progress Progress) error {
	f, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("upload %s: %w", local, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("upload %s: %w", local, err)
	}
	return c.Upload(ctx, f, st.Size(), remote, mode, progress)
}

// UploadAppend writes r (size bytes; -1 if unknown) to the end of remote,
// as the login user, where remote must hold exactly offset bytes; with
// offset 0 it is created or emptied. The file is made private (0600). Unlike Upload it is not
// atomic, so that a cut upload can go on where it stopped: bytes reach the
// file in order, and a cut leaves remote holding offset bytes plus a prefix
// of r. Callers check what is there before they go on and move the complete
// file into place. progress counts the bytes of r sent, not offset. It uses
// SFTP and falls back to `cat >>` when the host has no sftp-server.
func (c *Conn) UploadAppend(ctx context.Context, r io.Reader, size int64, remote string, offset int64, progress Progress) error {
	pr := &progressReader{r: r, total: size, fn: progress}
	err := c.appendSFTP(ctx, pr, remote, offset)
	if err == errNoSFTP {
		if pr.done > 0 {
			return fmt.Errorf("upload %s at %d: sftp failed after %d bytes", remote, offset, pr.done)
		}
		err = c.appendCat(ctx, pr, remote, offset)
	}
	if err != nil {
		return fmt.Errorf("upload %s at %d: %w", remote, offset, err)
	}
	return nil
}

var errNoSFTP = fmt.Errorf("no sftp subsystem")

// sftpClient opens an SFTP session that closes when ctx ends; errNoSFTP
// says the host has no sftp subsystem. The session is closed when the
// subsystem is refused (sftp.NewClient would leave it open, and a host
// allows only so many sessions on one connection).
func (c *Conn) sftpClient(ctx context.Context) (*sftp.Client, func(), error) {
	sess, err := c.client.NewSession()
	if err != nil {
		return nil, nil, fmt.Errorf("ssh %s: new session: %w", c.res.Addr(), err)
	}
	w, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		sess.Close()
		return nil, nil, errNoSFTP
	}
	cl, err := sftp.NewClientPipe(r, w, sftp.UseConcurrentWrites(true))
	if err != nil {
		sess.Close()
		return nil, nil, errNoSFTP
	}
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	return cl, func() { stop(); cl.Close(); sess.Close() }, nil
}

// sftpClientFor opens an SFTP client to write remote with, its directory
// made.
func (c *Conn) sftpClientFor(ctx context.Context, remote string) (*sftp.Client, func(), error) {
	cl, closeAll, err := c.sftpClient(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := cl.MkdirAll(path.Dir(remote)); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("sftp mkdir %s: %w", path.Dir(remote), err)
	}
	return cl, closeAll, nil
}

func (c *Conn) uploadSFTP(ctx context.Context, r io.Reader, tmp, remote string, mode os.FileMode) error {
	cl, closeAll, err := c.sftpClientFor(ctx, remote)
	if err != nil {
		return err
	}
	defer closeAll()
	f, err := cl.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("sftp create %s: %w", tmp, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("sftp chmod %s: %w", tmp, err)
	}
	if _, err := f.ReadFrom(r); err != nil {
		f.Close()
		cl.Remove(tmp)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("sftp write %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sftp close %s: %w", tmp, err)
	}
	if err := cl.PosixRename(tmp, remote); err != nil {
		return fmt.Errorf("sftp rename %s: %w", remote, err)
	}
	return nil
}

func (c *Conn) uploadCat(ctx context.Context, r io.Reader, tmp, remote string, mode os.FileMode) error {
	cmd := fmt.Sprintf("set -e; umask 077; mkdir -p %s; cat > %s; chmod %o %s; mv -f %s %s",
		ShellQuote(path.Dir(remote)), ShellQuote(tmp), mode.Perm(), ShellQuote(tmp), ShellQuote(tmp), ShellQuote(remote))
	return c.runCat(ctx, cmd, "cat > "+tmp, r)
}

// appendSFTP writes r at offset. The SFTP client sends its (concurrent)
// write requests in ascending offset order and sftp-server carries them out
// in the order they arrive, so a cut connection leaves a prefix.
func (c *Conn) appendSFTP(ctx context.Context, r io.Reader, remote string, offset int64) error {
	cl, closeAll, err := c.sftpClientFor(ctx, remote)
	if err != nil {
		return err
	}
	defer closeAll()
	flags := os.O_WRONLY
	if offset == 0 {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := cl.OpenFile(remote, flags)
	if err != nil {
		return fmt.Errorf("sftp open %s: %w", remote, err)
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("sftp chmod %s: %w", remote, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("sftp stat %s: %w", remote, err)
	}
	if st.Size() != offset {
		return fmt.Errorf("%s has %d bytes, want %d to append to", remote, st.Size(), offset)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Errorf("sftp seek %s: %w", remote, err)
	}
	if _, err := f.ReadFrom(r); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Concurrent writes past a failed one may have landed: cut the
		// file back to what is known to be written (if the connection
		// still works; callers check the prefix anyway).
		if pos, serr := f.Seek(0, io.SeekCurrent); serr == nil {
			f.Truncate(pos)
		}
		return fmt.Errorf("sftp write %s: %w", remote, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sftp close %s: %w", remote, err)
	}
	return nil
}

func (c *Conn) appendCat(ctx context.Context, r io.Reader, remote string, offset int64) error {
	q := ShellQuote(remote)
	check := fmt.Sprintf(": > %s", q)
	if offset > 0 {
		check = fmt.Sprintf(`n=$(wc -c < %s); [ "$n" -eq %d ] || { echo "%s has $n bytes, want %d to append to" >&2; exit 3; }`,
			q, offset, remote, offset)
	}
	cmd := fmt.Sprintf("set -e; umask 077; mkdir -p %s; %s; chmod 600 %s; cat >> %s", ShellQuote(path.Dir(remote)), check, q, q)
	return c.runCat(ctx, cmd, "cat >> "+remote, r)
}

// runCat runs a cat command fed with r, naming it short in its error.
func (c *Conn) runCat(ctx context.Context, cmd, short string, r io.Reader) error {
	stderr := tail.New(2048)
	err := c.RunAsLogin(ctx, cmd, r, nil, stderr)
	if ee, ok := err.(*ExitError); ok {
		ee.Cmd = short
		ee.Stderr = stderr.String()
	}
	return err
}

type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.fn != nil && n > 0 {
		p.fn(p.done, p.total)
	}
	return n, err
}

// Size is what is left to read (-1: unknown). The SFTP client pipelines
// its writes only for a reader that tells its size; without it every
// 32 KiB write would wait for the host's answer.
func (p *progressReader) Size() int64 {
	if p.total < 0 {
		return -1
	}
	return p.total - p.done
}
