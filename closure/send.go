package closure

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
)

// Runner runs commands on the target; internal/target.Conn satisfies it.
type Runner interface {
	// Run runs cmd (a shell command line) on the target with stdin/stdout/stderr attached,
	// returning an error (wrapping the exit status) when it fails.
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error
}

// SendOptions tune Send.
type SendOptions struct {
	// Agent is the command line that starts the agent binary on the target,
	// e.g. "/run/nixos-via/nixos-via"; " agent receive --root ROOT" is appended.
	Agent string
	// Root is the target root the closure goes under, e.g. "/mnt".
	Root string
	// Jobs is the number of parallel channels (--copy-jobs); 0 means 1.
	Jobs int
	// LocalRoot, when set, is the root of a local chroot store to read paths
	// from (LocalRoot + "/nix/store/..."); "" reads /nix/store.
	LocalRoot string
	// Sink receives progress (phase "install"); nil discards it.
	Sink event.Sink
	// BufferLimit: paths whose NAR is at most this big are serialised into
	// memory and checked before a byte is sent; bigger ones are hashed in a
	// first pass, then streamed and hashed again. 0 means 8 MiB.
	BufferLimit uint64
	// Substitute, when it names caches, has the agent fetch the missing
	// paths from them itself, beside the stream; the rest is streamed.
	Substitute SubstituteOptions
	// Source, when set, gives the NARs instead of the local store (--from);
	// LocalRoot is then unused.
	Source NARSource

	// readCPU, nil for /proc/stat, is where the compressor learns how
	// many CPUs this machine has idle (tests give a quiet or a busy one).
	readCPU cpuReader
}

// SendStats says what Send did.
type SendStats struct {
	Paths    int    // paths in the closure
	Present  int    // already valid on the target, not sent
	Sent     int    // paths sent
	NarBytes uint64 // NAR bytes sent
	// Substituted paths the agent fetched from the caches (SubstitutedBytes
	// of NAR); they are not in Sent.
	Substituted      int
	SubstitutedBytes uint64
	WireBytes        uint64 // bytes written to the agents' stdin (compressed stream + query)
	// Compression is the zstd levels the channels used, weakest to
	// strongest ("" when nothing was sent): "stored" (no compression) while
	// the link kept up with the raw bytes or the CPU was busy, "fastest",
	// "default" and "better" while the link was slow enough to afford them;
	// "stored to better" for a channel that went all the way.
	Compression string
}

// Send copies the paths in infos that are not yet valid under opts.Root on the
// target: it starts opts.Jobs `agent receive` sessions, asks the first which
// paths are present (a query ahead of its stream), then streams the rest
// over them. Every NAR is read from the local store (or opts.Source) and
// checked against its narHash before it is sent; a mismatch stops the copy. With
// opts.Substitute.Caches, an `agent substitute` session fetches the missing
// paths from the caches first, and only those it does not get are streamed,
// each as soon as the agent gives it up.
func Send(ctx context.Context, r Runner, infos []nix.PathInfo, opts SendOptions) (SendStats, error) {
	stats := SendStats{Paths: len(infos)}
	if err := checkSend(infos, opts); err != nil {
		return stats, err
	}
	sink := opts.Sink
	if sink == nil {
		sink = event.Discard{}
	}
	// Every receiver starts at once, so their sessions and processes are up
	// when the query is answered. The first answers it before its stream:
	// the first byte of a path goes out only after that, as the query
	// removes stale temporaries.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var query bytes.Buffer
	if err := writeQuery(&query, infos); err != nil {
		return stats, fmt.Errorf("send closure: %w", err)
	}
	jobs := max(1, opts.Jobs)
	sessions := make([]*receiveSession, jobs)
	for i := range sessions {
		sessions[i] = startReceive(ctx, r, opts, i == 0)
	}
	stats.WireBytes += uint64(query.Len())
	missing, err := sessions[0].ask(query.Bytes(), infos)
	if err != nil {
		cancel()
		for _, s := range sessions[1:] {
			s.finish(err)
		}
		return stats, err
	}
	stats.Present = len(infos) - len(missing)
	var total uint64
	for _, m := range missing {
		total += m.NarSize
	}
	emit(sink, event.Event{Kind: event.Step, Msg: fmt.Sprintf("copy closure: %d of %d paths missing on the target (%s)", len(missing), len(infos), event.Bytes(int64(total))),
		Data: map[string]string{"paths_total": fmt.Sprint(len(missing)), "bytes_total": fmt.Sprint(total), "paths_present": fmt.Sprint(stats.Present)}})
	// Biggest first, so the channels finish at about the same time.
	sortBiggestFirst(missing)
	prog := &progress{sink: sink, totalBytes: total, totalPaths: len(missing)}
	queue := make(chan nix.PathInfo, len(missing))
	substituted := startSubstitute(ctx, r, opts, missing, queue, prog)
	chans := sendChannels(ctx, cancel, sessions, queue, opts, jobs, prog)
	var subst substituteResult
	if substituted != nil {
		subst = <-substituted // done: the queue was closed
	}
	stats.WireBytes += chans.wire
	stats.Sent = int(prog.paths.Load())
	stats.NarBytes = prog.bytes.Load()
	stats.Substituted, stats.SubstitutedBytes = subst.got, subst.gotBytes
	if chans.sentSome {
		stats.Compression = levelNames(chans.weakest, chans.strongest)
	}
	if len(chans.errs) > 0 {
		return stats, fmt.Errorf("send closure: %w", firstCause(chans.errs))
	}
	if len(missing) == 0 {
		emit(sink, event.Event{Kind: event.Done, Msg: "copy closure: nothing to send"})
		return stats, nil
	}
	if got := stats.Sent + stats.Substituted; got != len(missing) {
		return stats, fmt.Errorf("send closure: %d of %d missing paths arrived (%d streamed, %d from the caches)", got, len(missing), stats.Sent, stats.Substituted)
	}
	prog.emit(true)
	reportSent(sink, stats, subst)
	return stats, nil
}

// checkSend refuses a Send that cannot start.
func checkSend(infos []nix.PathInfo, opts SendOptions) error {
	if opts.Agent == "" {
		return errors.New("send closure: no agent command")
	}
	if _, err := newLayout(opts.Root); err != nil {
		return fmt.Errorf("send closure: %w", err)
	}
	for _, info := range infos {
		if err := info.Validate(); err != nil {
			return fmt.Errorf("send closure: %w", err)
		}
	}
	if err := checkSubstituteOptions(opts.Substitute); err != nil {
		return fmt.Errorf("send closure: %w", err)
	}
	return nil
}

// channelsResult is what the channels of one Send did together.
type channelsResult struct {
	wire               uint64
	weakest, strongest int  // the compression levels used
	sentSome           bool // a channel sent a path
	errs               []error
}

// sendChannels feeds every receive session from queue until it is empty
// and all have answered; the first failure cancels the others.
func sendChannels(ctx context.Context, cancel context.CancelFunc, sessions []*receiveSession, queue <-chan nix.PathInfo, opts SendOptions, jobs int, prog *progress) channelsResult {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wire atomic.Uint64
		res  = channelsResult{weakest: strongestLevel, strongest: storedLevel}
	)
	// Every receiver gets a stream, an empty one when there is nothing (or
	// not enough) to send: it then commits nothing and answers "ok 0 0".
	for i, session := range sessions {
		wg.Add(1)
		go func(ch int) {
			defer wg.Done()
			cs, err := sendChannel(ctx, session, queue, opts, jobs, prog)
			wire.Add(cs.wire)
			mu.Lock()
			defer mu.Unlock()
			if cs.paths > 0 {
				res.weakest, res.strongest = min(res.weakest, cs.weakest), max(res.strongest, cs.strongest)
				res.sentSome = true
			}
			if err != nil {
				res.errs = append(res.errs, fmt.Errorf("channel %d: %w", ch, err))
				cancel()
			}
		}(i)
	}
	wg.Wait()
	res.wire = wire.Load()
	return res
}

// reportSent says where the missing paths came from.
func reportSent(sink event.Sink, stats SendStats, subst substituteResult) {
	if kind, msg := subst.summary(); msg != "" {
		emit(sink, event.Event{Kind: kind, Msg: msg, Data: map[string]string{
			"paths_substituted": fmt.Sprint(subst.got), "bytes_substituted": fmt.Sprint(subst.gotBytes), "paths_streamed": fmt.Sprint(subst.streamed)}})
	}
	sent := fmt.Sprintf("sent %d paths (%s NAR, %s on the wire)", stats.Sent, event.Bytes(int64(stats.NarBytes)), event.Bytes(int64(stats.WireBytes)))
	if stats.Substituted > 0 {
		sent = fmt.Sprintf("%d paths (%s NAR) from the caches, %s", stats.Substituted, event.Bytes(int64(stats.SubstitutedBytes)), sent)
	}
	emit(sink, event.Event{Kind: event.Done, Msg: "copy closure: " + sent})
}

// firstCause prefers a real failure over the context cancellations it caused
// in the other channels.
func firstCause(errs []error) error {
	for _, e := range errs {
		if !errors.Is(e, context.Canceled) {
			return e
		}
	}
	return errs[0]
}

func agentCommand(opts SendOptions, verb string) string {
	return fmt.Sprintf("%s agent %s --root %s", opts.Agent, verb, shellQuote(opts.Root))
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var errAgentExited = errors.New("agent exited before reading the whole stream")

// receiveSession is one `agent receive` running on the target, reading the
// stream from a pipe.
type receiveSession struct {
	cmd            string
	pw             *io.PipeWriter
	stdout, stderr bytes.Buffer // complete once done has delivered
	done           chan error
	// answer delivers the query's answer, for the session that is asked one.
	answer chan queryAnswer
}

type queryAnswer struct {
	valid map[string]bool
	err   error
}

// startReceive starts `agent receive`; it waits for its stream, or with
// query set, for a query and then its stream (see ask).
func startReceive(ctx context.Context, r Runner, opts SendOptions, query bool) *receiveSession {
	pr, pw := io.Pipe()
	s := &receiveSession{cmd: agentCommand(opts, "receive"), pw: pw, done: make(chan error, 1)}
	var stdout io.Writer = &s.stdout
	var outW *io.PipeWriter
	collected := make(chan struct{})
	if query {
		// The answer is read from the agent's stdout while it runs; what
		// follows it ("ok ...") is kept in s.stdout.
		s.answer = make(chan queryAnswer, 1)
		var outR *io.PipeReader
		outR, outW = io.Pipe()
		stdout = outW
		go func() {
			defer close(collected)
			br := bufio.NewReader(outR)
			valid, err := readValid(br)
			s.answer <- queryAnswer{valid, err}
			io.Copy(&s.stdout, br)
		}()
	} else {
		close(collected)
	}
	go func() {
		err := r.Run(ctx, s.cmd, pr, stdout, &s.stderr)
		// Unblock our writes if the agent ended without reading everything.
		pr.CloseWithError(errAgentExited)
		if outW != nil {
			outW.Close()
		}
		<-collected
		s.done <- err
	}()
	return s
}

// ask sends the query for infos (its text in query) to a session started
// with query set and returns the paths of infos the agent does not have.
// On failure the session is finished.
func (s *receiveSession) ask(query []byte, infos []nix.PathInfo) ([]nix.PathInfo, error) {
	_, err := s.pw.Write(query)
	a := <-s.answer // comes even when the agent fails: its stdout ends
	if err == nil {
		err = a.err
	}
	if err != nil {
		s.pw.CloseWithError(err)
		if runErr := <-s.done; runErr != nil { // the agent's own failure says more
			return nil, s.agentFailed(runErr)
		}
		return nil, fmt.Errorf("%s: %w", s.cmd, err)
	}
	var missing []nix.PathInfo
	for _, info := range infos {
		if !a.valid[info.Path] {
			missing = append(missing, info)
		}
	}
	return missing, nil
}

// finish ends the stream, cut short with sendErr if that is not nil, and
// waits for the agent to exit.
func (s *receiveSession) finish(sendErr error) error {
	if sendErr != nil {
		s.pw.CloseWithError(sendErr)
	} else {
		s.pw.Close()
	}
	runErr := <-s.done
	if errors.Is(sendErr, errAgentExited) && runErr != nil {
		sendErr = nil // the agent's own failure says more
	}
	if sendErr != nil {
		return sendErr
	}
	if runErr != nil {
		return s.agentFailed(runErr)
	}
	return nil
}

// agentFailed is the agent's failure, with the end of what it said on
// stderr; call it only after done has delivered runErr.
func (s *receiveSession) agentFailed(runErr error) error {
	return fmt.Errorf("%s: %w: %s", s.cmd, runErr, strings.TrimSpace(tail(s.stderr.String())))
}

// sendChannel feeds a receive session paths from queue until the queue is
// empty, then ends its stream and checks its answer.
func sendChannel(ctx context.Context, session *receiveSession, queue <-chan nix.PathInfo, opts SendOptions, jobs int, prog *progress) (channelStats, error) {
	concurrency := 2
	if jobs > 1 {
		concurrency = 1
	}
	enc, err := newCompressor(session.pw, concurrency, opts.readCPU)
	if err != nil {
		return channelStats{}, session.finish(err)
	}
	paths, narBytes := 0, uint64(0)
	stats := func() channelStats {
		return channelStats{wire: enc.wire(), paths: paths, weakest: enc.weakest, strongest: enc.strongest}
	}
	fw := newFrameWriter(enc)
	fw.magic()
	ps := &pathSender{ctx: ctx, opts: opts, fw: fw, prog: prog}
	// A reader goroutine serialises and checks the next paths while this one
	// compresses and sends the current one.
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	ready := ps.readAhead(readCtx, queue)
	abort := func(err error) (channelStats, error) {
		stopReading()
		for range ready { // let the reader finish
		}
		enc.Close()
		return stats(), session.finish(err)
	}
	for p := range ready {
		if err := ctx.Err(); err != nil {
			return abort(err)
		}
		if p.err != nil {
			return abort(p.err)
		}
		if err := ps.write(p); err != nil {
			return abort(err)
		}
		paths++
		narBytes += p.info.NarSize
		// While the agent substitutes, the queue may stay empty for long:
		// what is written goes out now instead of waiting in the buffers.
		if prog.substituting && len(ready) == 0 {
			if err := fw.flush(); err != nil {
				return abort(err)
			}
			if err := enc.Flush(); err != nil {
				return abort(err)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return abort(err)
	}
	fw.trailer(paths, narBytes)
	if err := fw.flush(); err != nil {
		enc.Close()
		return stats(), session.finish(err)
	}
	if err := enc.Close(); err != nil {
		return stats(), session.finish(err)
	}
	if err := session.finish(nil); err != nil {
		return stats(), err
	}
	gotPaths, gotBytes, err := parseOK(session.stdout.String())
	if err != nil {
		return stats(), fmt.Errorf("%s: %w", session.cmd, err)
	}
	if gotPaths != paths || gotBytes != narBytes {
		return stats(), fmt.Errorf("%s: agent committed %d paths / %d bytes, sent %d / %d", session.cmd, gotPaths, gotBytes, paths, narBytes)
	}
	return stats(), nil
}

// channelStats is what one channel did: bytes written to the agent's stdin,
// paths, and the weakest and strongest compression levels it used.
type channelStats struct {
	wire               uint64
	paths              int // paths written
	weakest, strongest int
}

type pathSender struct {
	ctx  context.Context // of the channel, for a Source
	opts SendOptions
	fw   *frameWriter
	prog *progress
	free chan *bytes.Buffer
}

// prepared is one path ready to be written: its NAR in buf (checked), or
// buf nil for a path too big to hold, which write streams itself.
type prepared struct {
	info nix.PathInfo
	buf  *bytes.Buffer
	err  error
}

const readAheadPaths = 2

func (ps *pathSender) local(p string) string {
	if ps.opts.LocalRoot == "" {
		return p
	}
	return filepath.Join(ps.opts.LocalRoot, p)
}

func (ps *pathSender) limit() uint64 {
	if ps.opts.BufferLimit == 0 {
		return 8 << 20
	}
	return ps.opts.BufferLimit
}

func (ps *pathSender) check(info nix.PathInfo, res nar.Result) error {
	if (res.Hash != info.NarHash || res.Size != info.NarSize) && ps.opts.Source != nil {
		return fmt.Errorf("%s: the NAR from --from is %s (%d bytes) but its narinfo says %s (%d bytes); refusing to send it",
			info.Path, res.Hash, res.Size, info.NarHash, info.NarSize)
	}
	if res.Hash != info.NarHash || res.Size != info.NarSize {
		return fmt.Errorf("%s: local NAR is %s (%d bytes) but path-info says %s (%d bytes); refusing to send a path that changed or is corrupt (nix-store --verify --check-contents)",
			info.Path, res.Hash, res.Size, info.NarHash, info.NarSize)
	}
	return nil
}

// dump writes info's NAR to w from the local store or opts.Source.
func (ps *pathSender) dump(w io.Writer, info nix.PathInfo) (nar.Result, error) {
	if ps.opts.Source != nil {
		return ps.opts.Source.NAR(ps.ctx, info, w)
	}
	return nar.Dump(w, ps.local(info.Path))
}

// readAhead takes paths from queue and serialises each small one into
// memory, checked against its narHash before any of it is sent. At most
// readAheadPaths wait in the returned channel. It stops after an error.
func (ps *pathSender) readAhead(ctx context.Context, queue <-chan nix.PathInfo) <-chan prepared {
	ps.free = make(chan *bytes.Buffer, readAheadPaths+1)
	for i := 0; i < readAheadPaths+1; i++ {
		ps.free <- new(bytes.Buffer)
	}
	ready := make(chan prepared, readAheadPaths)
	go func() {
		defer close(ready)
		for info := range queue {
			p := prepared{info: info}
			if info.NarSize <= ps.limit() {
				select {
				case p.buf = <-ps.free:
				case <-ctx.Done():
					return
				}
				p.buf.Reset()
				p.buf.Grow(int(info.NarSize)) // once, instead of doubling while dumping
				res, err := ps.dump(p.buf, info)
				if err == nil {
					err = ps.check(info, res)
				}
				p.err = err
			}
			select {
			case ready <- p:
			case <-ctx.Done():
				return
			}
			if p.err != nil {
				return
			}
		}
	}()
	return ready
}

// write writes one path item.
func (ps *pathSender) write(p prepared) error {
	info := p.info
	if p.buf != nil {
		ps.fw.pathHeader(info)
		_, err := ps.fw.Write(p.buf.Bytes())
		ps.free <- p.buf
		if err != nil {
			return err
		}
		ps.prog.add(1, info.NarSize)
		return nil
	}
	if ps.opts.Source != nil {
		// Too big to hold and not here: streamed as it comes, checked at
		// its end (a mismatch stops the copy, and the receiver refuses the
		// path on its own check).
		return ps.stream(info, func(w io.Writer) (nar.Result, error) { return ps.opts.Source.NAR(ps.ctx, info, w) })
	}
	// Too big to hold: a first pass checks it, a second streams it while
	// hashing again. Should the path change between the passes, we stop, and
	// the receiver's own check refuses what it got.
	src := ps.local(info.Path)
	res, err := nar.HashPath(src)
	if err != nil {
		return err
	}
	if err := ps.check(info, res); err != nil {
		return err
	}
	return ps.stream(info, func(w io.Writer) (nar.Result, error) { return nar.Dump(w, src) })
}

// stream writes info's header and then its NAR as dump writes it,
// counting the bytes as progress, and checks the NAR against info.
func (ps *pathSender) stream(info nix.PathInfo, dump func(io.Writer) (nar.Result, error)) error {
	ps.fw.pathHeader(info)
	res, err := dump(&progressWriter{w: ps.fw, prog: ps.prog})
	if err != nil {
		return err
	}
	if err := ps.check(info, res); err != nil {
		return err
	}
	ps.prog.add(1, 0)
	return nil
}

type progressWriter struct {
	w    io.Writer
	prog *progress
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.prog.add(0, uint64(n))
	return n, err
}

// progress reports bytes and paths done, at most about ten times a second.
type progress struct {
	sink       event.Sink
	totalBytes uint64
	totalPaths int
	bytes      atomic.Uint64 // streamed
	paths      atomic.Int64
	// substituting: the agent fetches from caches too; substBytes and
	// substPaths count what it got, and the events say so.
	substituting bool
	substBytes   atomic.Uint64
	substPaths   atomic.Int64
	mu           sync.Mutex
	last         time.Time
}

func (p *progress) add(paths int, bytes uint64) {
	p.paths.Add(int64(paths))
	p.bytes.Add(bytes)
	p.emit(false)
}

// addSubstituted counts one path of narBytes the agent got from a cache.
func (p *progress) addSubstituted(narBytes uint64) {
	p.substPaths.Add(1)
	p.substBytes.Add(narBytes)
	p.emit(false)
}

func (p *progress) emit(force bool) {
	p.mu.Lock()
	now := time.Now()
	if !force && now.Sub(p.last) < 100*time.Millisecond {
		p.mu.Unlock()
		return
	}
	p.last = now
	p.mu.Unlock()
	data := map[string]string{"paths": fmt.Sprint(p.paths.Load() + p.substPaths.Load()), "paths_total": fmt.Sprint(p.totalPaths)}
	if p.substituting {
		data["paths_substituted"] = fmt.Sprint(p.substPaths.Load())
		data["bytes_substituted"] = fmt.Sprint(p.substBytes.Load())
	}
	emit(p.sink, event.Event{Kind: event.Progress, Msg: "copy closure", Done: int64(p.bytes.Load() + p.substBytes.Load()), Total: int64(p.totalBytes), Unit: "bytes", Data: data})
}

func emit(s event.Sink, e event.Event) {
	e.Time = time.Now()
	e.Phase = phase.Install
	s.Emit(e)
}

func tail(s string) string {
	if len(s) > 2048 {
		return "…" + s[len(s)-2048:]
	}
	return s
}
