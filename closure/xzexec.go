package closure

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nixos-via/nixos-via/internal/pipecmd"
)

// xzMemlimit is what an xz(1) child may use to decode one NAR: the
// largest dictionary we accept and room for the decoder's own state. A
// block asking for more makes xz fail, as maxXZDict makes the Go decoder.
const xzMemlimit = maxXZDict + 16<<20

// xzToolPath is the xz(1) of XZ Utils the agent decodes with, found once;
// "" when there is none (BusyBox's xz has no --memlimit-decompress, so it
// cannot keep the bound, and is not used). A variable so tests can point
// it at a broken tool.
var xzToolPath = sync.OnceValue(findXZTool)

func findXZTool() string {
	p, err := exec.LookPath("xz")
	if err != nil {
		return ""
	}
	out, err := exec.Command(p, "--version").Output()
	if err != nil || !bytes.Contains(out, []byte("liblzma")) {
		return ""
	}
	return p
}

// newXZDecoder decodes xz from r with xz(1) (liblzma, about 1.6× the Go
// decoder's speed) when the machine has XZ Utils, else with the Go
// decoder. A tool that cannot be started also means the Go decoder; one
// that fails later fails the read (the caller's narHash check is what
// proves the bytes either way).
func newXZDecoder(r io.Reader, size uint64) (io.ReadCloser, error) {
	if tool := xzToolPath(); tool != "" {
		d, err := startXZ(tool, r)
		if err == nil {
			return d, nil
		}
	}
	d, err := newXZReader(r, maxXZDict, int64(size))
	if err != nil {
		return nil, err
	}
	return io.NopCloser(d), nil
}

// xzChild is a running xz -d: what the caller reads is its stdout; a
// goroutine feeds it the compressed input.
type xzChild struct {
	cmd    *exec.Cmd
	out    *os.File
	stderr *capBuffer
	fed    chan error // the feeding goroutine's result
	err    error      // set once the output ended
	done   bool
}

func startXZ(tool string, r io.Reader) (*xzChild, error) {
	x := &xzChild{stderr: &capBuffer{max: 4 << 10}, fed: make(chan error, 1)}
	x.cmd = exec.Command(tool, "--decompress", "--stdout", "--format=xz", "--threads=1",
		"--memlimit-decompress="+strconv.Itoa(xzMemlimit))
	x.cmd.Stderr = x.stderr
	// A child of the child that keeps stderr open must not hold up Wait.
	x.cmd.WaitDelay = 2 * time.Second
	inW, outR, err := pipecmd.Start(x.cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", tool, err)
	}
	x.out = outR
	go func() {
		_, err := io.Copy(inW, r)
		x.fed <- err // before the close, so an xz that then fails sees why
		inW.Close()
	}()
	return x, nil
}

func (x *xzChild) Read(p []byte) (int, error) {
	if x.err != nil {
		return 0, x.err
	}
	n, err := x.out.Read(p)
	if err == io.EOF {
		// The output ended: only a clean exit with all input fed is an end.
		err = x.finish()
		if err == nil {
			err = io.EOF
		}
	}
	if err != nil {
		x.err = err
	}
	return n, err
}

// finish waits for the child and the feeder and says what went wrong.
func (x *xzChild) finish() error {
	x.done = true
	werr := x.cmd.Wait()
	x.out.Close()
	if werr != nil {
		// The input's own failure (a bound, a stall) says more than xz's
		// "unexpected end of input"; the feeder ends once the pipe is gone.
		select {
		case ferr := <-x.fed:
			if ferr != nil && !errors.Is(ferr, os.ErrClosed) && !errors.Is(ferr, syscall.EPIPE) {
				return ferr
			}
		default:
		}
		return fmt.Errorf("xz -d: %w: %s", werr, strings.TrimSpace(x.stderr.String()))
	}
	if ferr := <-x.fed; ferr != nil {
		return fmt.Errorf("xz -d input: %w", ferr)
	}
	return nil
}

// Close stops the child if it is still running. The feeder may still be
// blocked reading the caller's input; it ends when that input is closed.
func (x *xzChild) Close() error {
	if x.done {
		return nil
	}
	x.done = true
	x.cmd.Process.Kill()
	x.cmd.Wait()
	return x.out.Close()
}

// capBuffer keeps the first max bytes written to it.
type capBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}
