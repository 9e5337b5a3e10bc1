package kexec

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/tail"
	"github.com/nixos-via/nixos-via/internal/target"
)

// Run is the kexec phase: pre-flight, the tarball (fetched by the host
// itself when it can, else from here, uploaded with resume), the
// throwaway access key when the installer would trust none of ours,
// kexec/run, and the reconnect to the installer with a key of the host's
// own set. It returns the connection to the installer and its facts, or
// conn and opts.Facts unchanged when the host already runs one (and
// !opts.Force). Whatever fails before the installer answers leaves the
// host as it was: the work directory is removed, the access key taken out
// again (or the error says where it is); only a cut upload keeps what it
// sent for the next run (opts.Left is told). Failures of the phase itself are
// *phase.Error; refusals *phase.Refusal.
func Run(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) (*target.Conn, *target.Facts, error) {
	facts := opts.Facts
	if facts.IsInstaller && !opts.Force {
		info(sink, "the host already runs an installer: skipping kexec (--force-kexec to kexec anyway)")
		return conn, facts, nil
	}
	// Checks that need no tarball come first, so a refusal costs no download.
	if _, err := Preflight(PreflightInput{Facts: facts, CustomImage: opts.Source != "", WorkDirFree: -1}); err != nil {
		return nil, nil, err
	}
	st, err := stage(ctx, conn, sink, opts)
	if err != nil {
		return nil, nil, err
	}
	key, err := accessKey(ctx, conn, sink, facts)
	if err != nil {
		RemoveWorkDir(ctx, conn, st.w)
		return nil, nil, err
	}
	var signers []ssh.Signer
	if key != nil {
		signers = []ssh.Signer{key.Signer}
	}
	step(sink, "loading the installer kernel")
	if opts.Kexecing != nil {
		opts.Kexecing()
	}
	runOut, err := RunScript(ctx, conn, st.w, opts.ExtraFlags)
	if err != nil {
		return nil, nil, failed(keyLeft(ctx, conn, sink, key, err))
	}
	ro := opts
	ro.Events, ro.Signers = sink, signers
	next, nextFacts, err := Reconnect(ctx, conn, ro)
	if err != nil {
		// The last thing the host said is run's output: show it.
		var ke *Error
		if errors.As(err, &ke) && ke.Output == "" {
			ke.Output = tail.Lines(runOut, 20)
		}
		return nil, nil, failed(keyLeft(ctx, conn, sink, key, err))
	}
	info(sink, "the installer answers with the host's own key (%s), %d MiB RAM", nextFacts.OSName, nextFacts.MemTotalKiB>>10)
	return next, nextFacts, nil
}

// staged is the installer's files on the host, checked by the pre-flight.
type staged struct {
	w  WorkDir
	tb *Tarball
}

// stage puts the tarball's files into a work directory on the host: the
// host downloads it itself where it can, else it is fetched here and
// uploaded. The full pre-flight runs before anything is uploaded.
func stage(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options) (staged, error) {
	facts := opts.Facts
	src := opts.Source
	if src == "" {
		url, err := DefaultURL(facts.Arch)
		if err != nil {
			return staged{}, &phase.Refusal{Check: "arch", Msg: err.Error()}
		}
		src = url
	}
	tb := opts.Tarball
	var w WorkDir
	onHost := false
	if tb == nil && IsURL(src) {
		var err error
		if tb, w, onHost, err = downloadOnHost(ctx, conn, sink, opts, src); err != nil {
			return staged{}, err
		}
	}
	if tb == nil {
		var err error
		if tb, err = FetchTarball(ctx, src, sink, opts); err != nil {
			return staged{}, err
		}
	}
	if w.Path == "" {
		var err error
		if w, err = PrepareWorkDir(ctx, conn); err != nil {
			return staged{}, failed(err)
		}
	}
	in := PreflightInput{Facts: facts, Tarball: tb, CustomImage: opts.Source != "",
		ForceKexec: opts.Force, WorkDirFree: w.Free, WorkDirRAM: w.InRAM()}
	if onHost {
		in.WorkDirFree = -1 // the files are already there
	} else {
		n, err := StagedBytes(ctx, conn, w, tb)
		if err != nil {
			RemoveWorkDir(ctx, conn, w)
			return staged{}, failed(err)
		}
		in.Staged = n
	}
	warnings, err := Preflight(in)
	if err != nil {
		RemoveWorkDir(ctx, conn, w)
		return staged{}, err
	}
	for _, m := range warnings {
		sink.Emit(event.Event{Kind: event.Warn, Msg: m})
	}
	if !onHost {
		step(sink, "uploading the installer to %s", w.Path)
		if err := Upload(ctx, conn, tb, w, sink); err != nil {
			leaveUpload(ctx, conn, w, tb, opts.Left)
			return staged{}, failed(err)
		}
	}
	return staged{w: w, tb: tb}, nil
}

// leaveUpload cleans up after a failed upload: the work directory goes,
// and so does the staging directory when the user interrupted the run
// (ctx is cancelled); after any other failure what was sent stays in
// StagingDir, for the next run to resume. left is told what stays.
func leaveUpload(ctx context.Context, conn *target.Conn, w WorkDir, tb *Tarball, left func([]string)) {
	var dirs []string
	if RemoveWorkDir(ctx, conn, w) != nil {
		dirs = append(dirs, w.Path)
	}
	staging := StagingDir(w, tb)
	if ctx.Err() != nil {
		cctx, cancel := phase.CleanupContext(ctx)
		defer cancel()
		if conn.RunAsLogin(cctx, "rm -rf "+target.ShellQuote(staging), nil, nil, nil) == nil {
			staging = ""
		}
	}
	if staging != "" {
		dirs = append(dirs, staging)
	}
	if left != nil && len(dirs) > 0 {
		left(dirs)
	}
}

// downloadOnHost lets the host fetch src itself when it can: a host in a
// data centre is usually closer to the release than we are. It returns
// no tarball (and no error) when the host cannot.
func downloadOnHost(ctx context.Context, conn *target.Conn, sink event.Sink, opts Options, src string) (*Tarball, WorkDir, bool, error) {
	facts := opts.Facts
	p := ProbeDownload(ctx, conn, facts, src)
	if !p.OK {
		info(sink, "the host cannot fetch %s itself (%s): it comes from here", src, p.Why)
		return nil, WorkDir{}, false, nil
	}
	w, err := PrepareWorkDir(ctx, conn)
	if err != nil {
		return nil, w, false, failed(err)
	}
	if err := roomToDownload(facts, w, p.Bytes); err != nil {
		RemoveWorkDir(ctx, conn, w)
		return nil, w, false, err
	}
	step(sink, "the host downloads the installer from %s", src)
	tb, err := DownloadOnHost(ctx, conn, facts, src, opts.SHA256, w)
	if err != nil {
		RemoveWorkDir(ctx, conn, w)
		return nil, w, false, failed(err)
	}
	unpacked := event.Bytes(tb.InitrdUnpacked) + " unpacked"
	if tb.InitrdEstimated {
		unpacked += " (estimated: the host could not decompress it)"
	}
	info(sink, "sha256 %s, %s (kernel %s, initrd %s, %s)", tb.SHA256, event.Bytes(tb.Bytes), event.Bytes(tb.KernelBytes), event.Bytes(tb.InitrdBytes), unpacked)
	return tb, w, true, nil
}

// FetchTarball fetches src into opts.CacheDir (Fetch), saying what it got.
func FetchTarball(ctx context.Context, src string, sink event.Sink, opts Options) (*Tarball, error) {
	step(sink, "installer tarball %s", src)
	tb, err := Fetch(ctx, src, opts.CacheDir, opts.SHA256, opts.httpClient(), sink)
	if err != nil {
		return nil, err
	}
	info(sink, "sha256 %s, %s (kernel %s, initrd %s, %s unpacked)", tb.SHA256, event.Bytes(tb.Bytes),
		event.Bytes(tb.KernelBytes), event.Bytes(tb.InitrdBytes), event.Bytes(tb.InitrdUnpacked))
	return tb, nil
}

// accessKey gives the installer a key we hold when it would trust none of
// ours (EnsureAccessKey); nil when none is needed. A key that cannot be
// added refuses the kexec.
func accessKey(ctx context.Context, conn *target.Conn, sink event.Sink, facts *target.Facts) (*AccessKey, error) {
	key, err := EnsureAccessKey(ctx, conn, facts)
	if err != nil {
		return nil, &phase.Refusal{Check: "installer-login", Msg: fmt.Sprintf("the installer would let nobody in without a key of ours: %v", err)}
	}
	if key != nil {
		info(sink, "none of our keys is in the authorized_keys files the installer takes over: added this run's throwaway key to %s (%s); it is used after kexec and leaves with the old system",
			strings.Join(key.Files, " and "), key.Line)
	}
	return key, nil
}

// keyLeft is err of a kexec that failed after accessKey added key and
// before the installer answered: the key is taken out again while the old
// system still answers, else err says where it is and how to remove it.
func keyLeft(ctx context.Context, conn *target.Conn, sink event.Sink, key *AccessKey, err error) error {
	if key == nil {
		return err
	}
	rctx, cancel := phase.CleanupContext(ctx)
	defer cancel()
	files := strings.Join(key.Files, " and ")
	if rmErr := key.Remove(rctx, conn); rmErr == nil {
		info(sink, "the throwaway key %s is removed from %s again", key.Comment, files)
		return err
	}
	return fmt.Errorf("%w\n%s", err, key.Where())
}

// roomToDownload refuses a host download that would not fit: the tarball
// and its unpacked files need about twice its size where they land (and,
// on a RAM filesystem, in memory).
func roomToDownload(f *target.Facts, w WorkDir, size int64) error {
	if size <= 0 {
		return nil
	}
	if w.Free >= 0 && w.Free < 2*size {
		return &phase.Refusal{Check: "disk-space", Msg: fmt.Sprintf("the host has %d MiB free in %s but downloading and unpacking the %d MiB installer needs about %d MiB",
			w.Free>>20, w.Path, size>>20, 2*size>>20)}
	}
	if w.InRAM() && f.MemAvailKiB*1024 < 2*size+LoadMargin {
		return &phase.Refusal{Check: "memory", Msg: fmt.Sprintf("the host has %d MiB available and %s is in RAM, but downloading and unpacking the %d MiB installer there needs about %d MiB",
			f.MemAvailKiB>>10, w.Path, size>>20, (2*size+LoadMargin)>>20)}
	}
	return nil
}

// failed marks err as a failure of the kexec phase.
func failed(err error) error { return &phase.Error{Phase: phase.Kexec, Err: err} }

func step(s event.Sink, format string, a ...any) {
	s.Emit(event.Event{Phase: phase.Kexec, Kind: event.Step, Msg: fmt.Sprintf(format, a...)})
}

func info(s event.Sink, format string, a ...any) {
	s.Emit(event.Event{Phase: phase.Kexec, Kind: event.Info, Msg: fmt.Sprintf(format, a...)})
}
