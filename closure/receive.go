package closure

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// ReceiveOptions tune Receive.
type ReceiveOptions struct {
	// BatchBytes and BatchPaths bound what is received before one filesystem
	// sync and the renames into place (group commit). 0 means 16 MiB and 1024
	// paths. A cut stream loses at most the path in flight: verified paths of
	// the open batch are committed before Receive returns the error.
	BatchBytes uint64
	BatchPaths int
	// BatchAge commits a batch once its first path has waited this long, so
	// an agent killed outright (no chance to commit) loses little. 0 means
	// 250ms. Batches are synced while the stream goes on; small ones keep the
	// last sync, which the end of the copy waits for, short.
	BatchAge time.Duration
}

// ReceiveStats says what Receive committed.
type ReceiveStats struct {
	Paths    int
	NarBytes uint64
}

type pendingPath struct {
	info nix.PathInfo
	tmp  string
}

type receiver struct {
	l    layout
	opts ReceiveOptions
	// pendMu guards the open batch: the receiving goroutine adds to it,
	// ageBatches hands it over when it waits too long.
	pendMu       sync.Mutex
	pending      []pendingPath
	pendingBytes uint64
	batchStart   time.Time
	buf          []byte // scratch for nar.Restore, shared by every path

	// A committer goroutine syncs and renames full batches while the next
	// batch is restored, so the stream keeps flowing during a sync.
	batches   chan []pendingPath
	committed chan struct{} // closed when the committer is done
	mu        sync.Mutex
	commitErr error
	stats     ReceiveStats
	// onCommit, when set, is called by the committer with each batch once
	// it is in place and recorded (the substituter reports it then).
	onCommit func([]pendingPath)
}

// Receive reads a closure stream (see the package comment) from r and installs
// each path under root/nix/store. Each path is restored under a temporary
// name, checked against the header's narSize and narHash, synced to disk and
// renamed into place, then recorded in root/nix/var/nixos-via/valid. A path is
// either complete or absent; a corrupt or cut stream leaves no partial path.
func Receive(ctx context.Context, r io.Reader, root string, opts ReceiveOptions) (ReceiveStats, error) {
	l, err := newLayout(root)
	if err != nil {
		return ReceiveStats{}, err
	}
	if opts.BatchBytes == 0 {
		opts.BatchBytes = 16 << 20
	}
	if opts.BatchPaths == 0 {
		opts.BatchPaths = 1024
	}
	if opts.BatchAge == 0 {
		opts.BatchAge = 250 * time.Millisecond
	}
	if err := l.mkdirs(); err != nil {
		return ReceiveStats{}, fmt.Errorf("receive: %w", err)
	}
	dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return ReceiveStats{}, fmt.Errorf("receive: zstd: %w", err)
	}
	// Decompress in a goroutine of its own, so that decoding overlaps with
	// the file system calls of restoring (as zstd -d | tar -x would). The
	// goroutine owns dec; closing pr makes it stop at its next write.
	pr, pw := io.Pipe()
	go func() {
		_, err := io.CopyBuffer(pw, dec, make([]byte, 256<<10))
		pw.CloseWithError(err) // nil: EOF for the reader
		dec.Close()
	}()
	defer pr.Close()
	return receiveDecoded(ctx, pr, l, opts)
}

// receiveDecoded is Receive after decompression.
func receiveDecoded(ctx context.Context, r io.Reader, l layout, opts ReceiveOptions) (ReceiveStats, error) {
	rc := &receiver{l: l, opts: opts, batches: make(chan []pendingPath, 1), committed: make(chan struct{})}
	go rc.committer()
	stopAging := rc.ageBatches()
	err := rc.run(ctx, &frameReader{r: bufio.NewReaderSize(r, 256<<10)})
	stopAging()
	// Whatever happened, verified paths are committed.
	rc.flush()
	close(rc.batches)
	<-rc.committed
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.commitErr != nil && !errors.Is(err, rc.commitErr) {
		err = errors.Join(err, rc.commitErr)
	}
	return rc.stats, err
}

// committer commits batches in order; after a failure it only cleans up.
// When the batches end, it makes the renames of the commits durable, so that
// what Receive reports committed is on disk.
func (rc *receiver) committer() {
	defer close(rc.committed)
	renamed := false
	for batch := range rc.batches {
		if rc.failed() != nil {
			for _, p := range batch {
				nar.RemoveAll(p.tmp)
			}
			continue
		}
		if err := rc.commit(batch); err != nil {
			rc.setCommitErr(err)
		} else if rc.onCommit != nil {
			rc.onCommit(batch)
		}
		renamed = true
	}
	if renamed {
		if err := rc.syncStoreAndRecords(); err != nil {
			rc.setCommitErr(err)
		}
	}
}

// syncStoreAndRecords flushes the store and the records directory to disk
// (one filesystem, usually, but they need not be).
func (rc *receiver) syncStoreAndRecords() error {
	if err := syncFS(rc.l.storeDir()); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if err := syncFS(rc.l.validDir()); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	return nil
}

func (rc *receiver) setCommitErr(err error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.commitErr == nil {
		rc.commitErr = err
	}
}

func (rc *receiver) failed() error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.commitErr
}

// flush hands the pending paths to the committer (waiting while it still has
// a batch queued).
func (rc *receiver) flush() {
	rc.pendMu.Lock()
	defer rc.pendMu.Unlock()
	rc.flushLocked()
}

func (rc *receiver) flushLocked() {
	if len(rc.pending) > 0 {
		rc.batches <- rc.pending
	}
	rc.pending, rc.pendingBytes = nil, 0
}

// add puts a verified path in the open batch and hands the batch to the
// committer once it is big enough or old enough.
func (rc *receiver) add(p pendingPath) {
	rc.pendMu.Lock()
	defer rc.pendMu.Unlock()
	if len(rc.pending) == 0 {
		rc.batchStart = time.Now()
	}
	rc.pending = append(rc.pending, p)
	rc.pendingBytes += p.info.NarSize
	if rc.pendingBytes >= rc.opts.BatchBytes || len(rc.pending) >= rc.opts.BatchPaths || time.Since(rc.batchStart) >= rc.opts.BatchAge {
		rc.flushLocked()
	}
}

// ageBatches commits the open batch once its first path has waited
// BatchAge, also when no further path comes to trigger it (a stream that
// waits for the caches, a slow sender), until the returned stop is called.
func (rc *receiver) ageBatches() (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(max(rc.opts.BatchAge/4, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				rc.pendMu.Lock()
				if len(rc.pending) > 0 && time.Since(rc.batchStart) >= rc.opts.BatchAge {
					rc.flushLocked()
				}
				rc.pendMu.Unlock()
			}
		}
	}()
	return func() { close(quit); <-done }
}

func (rc *receiver) run(ctx context.Context, fr *frameReader) error {
	if err := fr.magic(); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	paths, narBytes := 0, uint64(0)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if err := rc.failed(); err != nil {
			return err
		}
		kind, err := fr.item()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if kind == itemTrailer {
			return rc.trailer(fr, paths, narBytes)
		}
		info, err := fr.pathHeader()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if err := rc.receivePath(fr, info); err != nil {
			return err
		}
		paths++
		narBytes += info.NarSize
	}
}

func (rc *receiver) trailer(fr *frameReader, paths int, narBytes uint64) error {
	wantPaths, err := fr.uint("trailer path count")
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	wantBytes, err := fr.uint("trailer byte count")
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if wantPaths != uint64(paths) || wantBytes != narBytes {
		return fmt.Errorf("receive: %w", streamErr("trailer says %d paths / %d bytes, stream had %d / %d", wantPaths, wantBytes, paths, narBytes))
	}
	if _, err := fr.r.ReadByte(); err != io.EOF {
		if err == nil {
			return fmt.Errorf("receive: %w", streamErr("data after the trailer"))
		}
		return fmt.Errorf("receive: after the trailer: %w", err)
	}
	return nil
}

func (rc *receiver) receivePath(fr *frameReader, info nix.PathInfo) error {
	tmp, err := rc.l.temp(info.Path)
	if err != nil {
		return fmt.Errorf("receive %s: %w", info.Path, err)
	}
	lr := &io.LimitedReader{R: fr.r, N: int64(info.NarSize)}
	if rc.buf == nil {
		rc.buf = make([]byte, 128<<10)
	}
	res, err := nar.Restore(lr, tmp, nar.RestoreOptions{Canonical: true, Fsync: perFileSync, Buf: rc.buf})
	if err != nil {
		if lr.N == 0 && errors.Is(err, nar.ErrFormat) {
			return fmt.Errorf("receive %s: NAR is longer than the header's narSize %d: %w", info.Path, info.NarSize, err)
		}
		return fmt.Errorf("receive %s: %w", info.Path, err)
	}
	if lr.N != 0 {
		return errors.Join(fmt.Errorf("receive %s: %w", info.Path,
			streamErr("NAR is %d bytes, header says %d", res.Size, info.NarSize)), nar.RemoveAll(tmp))
	}
	if res.Hash != info.NarHash {
		return errors.Join(fmt.Errorf("receive %s: NAR hash mismatch: got %s, header says %s", info.Path, res.Hash, info.NarHash),
			nar.RemoveAll(tmp))
	}
	rc.add(pendingPath{info: info, tmp: tmp})
	return nil
}

// commit makes the pending paths durable and visible, in an order that
// never lets a crash leave a path that looks valid but is not:
//  1. remove any old copy of each path (unrecorded, or being replaced);
//  2. write the batch's record file under a temporary name;
//  3. sync the filesystem(s): temporaries and records are on disk;
//  4. rename each path into place, sync the store directory, then rename the
//     record file into place and sync its directory.
//
// A crash before the record file's rename leaves paths without a record
// (sent again); a record alone never makes a path valid.
func (rc *receiver) commit(pending []pendingPath) (err error) {
	if len(pending) == 0 {
		return nil
	}
	name := recordName()
	recTmp := filepath.Join(rc.l.validDir(), tmpPrefix+name)
	defer func() {
		if err == nil {
			return
		}
		errs := []error{err}
		for _, p := range pending {
			if p.tmp != "" {
				errs = append(errs, nar.RemoveAll(p.tmp))
			}
		}
		if rmErr := os.Remove(recTmp); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			errs = append(errs, rmErr)
		}
		err = errors.Join(errs...)
	}()
	infos := make([]nix.PathInfo, len(pending))
	for i, p := range pending {
		if err := nar.RemoveAll(rc.l.final(p.info.Path)); err != nil {
			return fmt.Errorf("receive %s: replace old copy: %w", p.info.Path, err)
		}
		infos[i] = p.info
	}
	data, err := encodeRecords(infos)
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if err := writeFile(recTmp, data); err != nil {
		return err
	}
	if err := rc.syncStoreAndRecords(); err != nil {
		return err
	}
	// The renames need no sync of their own here: the next batch's sync
	// or the committer's last one makes them durable. Until then a crash
	// can lose a rename, and either way the path is not valid (valid means
	// in place and recorded), so a later run sends it again; it cannot
	// leave a valid path with unsynced content.
	for i, p := range pending {
		if err := os.Rename(p.tmp, rc.l.final(p.info.Path)); err != nil {
			return fmt.Errorf("receive %s: %w", p.info.Path, err)
		}
		pending[i].tmp = "" // in place now; nothing to clean up
	}
	if err := os.Rename(recTmp, filepath.Join(rc.l.validDir(), name)); err != nil {
		return fmt.Errorf("receive: record: %w", err)
	}
	rc.mu.Lock()
	for _, p := range pending {
		rc.stats.Paths++
		rc.stats.NarBytes += p.info.NarSize
	}
	rc.mu.Unlock()
	return nil
}

func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("receive: write %s: %w", path, err)
	}
	if perFileSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("receive: fsync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	return nil
}

func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// ServeReceive is the agent side of `agent receive`: it receives a closure
// stream from stdin into root and, on success, answers "ok <paths> <bytes>"
// on stdout. When stdin starts with a query instead, it first answers that
// on stdout (as `agent query` does) and then reads the stream that follows:
// the sender learns what is missing without a session of its own for it.
func ServeReceive(ctx context.Context, stdin io.Reader, stdout io.Writer, root string) error {
	growPipe(stdin, stdinPipeSize)
	br := bufio.NewReaderSize(stdin, 64<<10)
	if startsWithQuery(br) {
		if err := answerQuery(ctx, br, stdout, root); err != nil {
			return err
		}
	}
	// The zstd decoder reads whole blocks: once the bytes br holds are
	// used, it reads stdin directly instead of through one more copy.
	rest, _ := br.Peek(br.Buffered())
	stats, err := Receive(ctx, io.MultiReader(bytes.NewReader(rest), stdin), root, ReceiveOptions{})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "ok %d %d\n", stats.Paths, stats.NarBytes)
	return err
}

// stdinPipeSize is what the agent asks its stdin pipe to hold: sshd writes
// the channel's data into it, and at the default 64 KiB both sides wake up
// for every 64 KiB.
const stdinPipeSize = 1 << 20

// ReadRecords returns the records of every path received under root and
// still present, sorted by path: together, the registration of what is there.
func ReadRecords(root string) ([]nix.PathInfo, error) {
	l, err := newLayout(root)
	if err != nil {
		return nil, err
	}
	recs, err := l.records()
	if err != nil {
		return nil, err
	}
	var infos []nix.PathInfo
	for p, rec := range recs {
		if l.valid(recs, p, rec.NarHash) {
			infos = append(infos, rec)
		}
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Path < infos[j].Path })
	return infos, nil
}
