package target

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/pkg/sftp"
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

var errNoSFTP = fmt.Errorf("no sftp subsystem")

func (c *Conn) uploadSFTP(ctx context.Context, r io.Reader, tmp, remote string, mode os.FileMode) error {
	cl, err := sftp.NewClient(c.client, sftp.UseConcurrentWrites(true))
	if err != nil {
		return errNoSFTP
	}
	defer cl.Close()
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer stop()
	if err := cl.MkdirAll(path.Dir(remote)); err != nil {
		return fmt.Errorf("sftp mkdir %s: %w", path.Dir(remote), err)
	}
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
	stderr := &tailWriter{buf: new(bytes.Buffer), max: 2048}
	err := c.RunAsLogin(ctx, cmd, r, nil, stderr)
	if ee, ok := err.(*ExitError); ok {
		ee.Cmd = "cat > " + tmp
		ee.Stderr = stderr.buf.String()
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
