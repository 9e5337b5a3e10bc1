package cli

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/nixos-via/nixos-via/disko"
	"github.com/nixos-via/nixos-via/diskorun"
	"github.com/nixos-via/nixos-via/hwconfig"
	"github.com/nixos-via/nixos-via/install"
	"github.com/nixos-via/nixos-via/internal/event"
	"github.com/nixos-via/nixos-via/internal/nix"
	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/target"
	"github.com/nixos-via/nixos-via/kexec"
	"github.com/nixos-via/nixos-via/reboot"
)

// flow runs the phases of one install, in order.
type flow struct {
	o      *Options
	env    Env
	ui     *ui
	nix    nix.CLI
	layout *disko.Layout
	script string      // rendered disko script
	needs  disko.Needs // what the script needs on the installer
	conn   *target.Conn
	facts  *target.Facts

	diskoDone bool // the installer already applied this layout (a resumed run)

	boot      reboot.BootConfig // how the installed system comes up
	loginUser string            // whom the run first logged in as

	toplevel string         // the system to install
	closure  []nix.PathInfo // its closure
	nixStore string         // the system's own nix-store
}

func (f *flow) has(phase string) bool { return contains(f.o.Phases, phase) }

func (f *flow) step(phase, format string, a ...any) {
	f.ui.Emit(event.Event{Phase: phase, Kind: event.Step, Msg: fmt.Sprintf(format, a...)})
}

func (f *flow) info(phase, format string, a ...any) {
	f.ui.Emit(event.Event{Phase: phase, Kind: event.Info, Msg: fmt.Sprintf(format, a...)})
}

func (f *flow) warn(msg string) { f.ui.Emit(event.Event{Kind: event.Warn, Msg: msg}) }

// run does the whole install. Everything that can be checked locally is
// checked before the first connection; nothing destructive runs before the
// pre-flight checks on the host have passed.
func (f *flow) run(ctx context.Context) error {
	if f.o.Debug || f.o.PrintBuildLog {
		f.nix.Log = f.env.Stderr
	}
	for _, p := range f.o.NixOptions {
		f.nix.Args = append(f.nix.Args, "--option", p.Name, p.Value)
	}
	if f.o.ShowTrace {
		f.nix.Args = append(f.nix.Args, "--show-trace")
	}

	// Local work first: a bad layout or a missing key file stops here.
	// With --generate-hardware-config the configuration depends on the
	// file the host generates, so evaluation and build wait for it
	// (prebuilt --store-paths cannot depend on it).
	generate := f.o.GenerateHWConfig != nil
	deferBuild := generate && f.o.StorePaths == nil
	if generate {
		if err := hwconfig.PreparePath(f.o.GenerateHWConfig.Path); err != nil {
			return err
		}
	}
	if !deferBuild {
		if err := f.buildLocal(ctx); err != nil {
			return err
		}
	}
	for _, k := range f.o.DiskEncryptionKey {
		if _, err := os.Stat(k.Local); err != nil {
			return usagef("--disk-encryption-keys %s %s: %v", k.Remote, k.Local, err)
		}
	}
	var tb *kexec.Tarball
	if f.has("kexec") && f.o.Kexec != "" && !kexec.IsURL(f.o.Kexec) {
		var err error
		if tb, err = f.fetchTarball(ctx, f.o.Kexec); err != nil {
			return err
		}
	}

	f.step("probe", "connecting to %s", f.o.Host)
	conn, facts, err := connect(ctx, f.env, f.o.conn(), f.warn)
	if err != nil {
		return err
	}
	f.conn, f.facts = conn, facts
	f.loginUser = conn.Resolved().User
	defer func() { f.conn.Close() }()
	f.info("probe", "%s %s, %s, %d MiB RAM, %s, logged in as %s", facts.OSName, facts.Arch, facts.Kernel, facts.MemTotalKiB>>10, facts.Firmware, facts.User)

	if !deferBuild {
		if err := f.checkLayoutOnHost(ctx); err != nil {
			return err
		}
	}

	if f.has("kexec") && f.has("disko") && f.layout != nil && (!facts.IsInstaller || f.o.ForceKexec) {
		if err := f.keysSurviveKexec(); err != nil {
			return err
		}
	}
	if f.has("kexec") {
		if err := f.kexec(ctx, tb); err != nil {
			return err
		}
	} else if !facts.IsRoot && facts.Escalation == "" {
		return &phase.Refusal{Check: "root", Msg: fmt.Sprintf("the login user %s is not root and has neither sudo nor doas", facts.User)}
	}
	if generate {
		// In the installer now (or the host already was one).
		if err := f.hardwareConfig(ctx); err != nil {
			return &PhaseError{Phase: phase.HardwareConfig, Err: err}
		}
	}
	if deferBuild {
		// Evaluate and build what may import the file, then check the
		// layout's disks and list what will be erased, still before
		// anything on them is touched.
		if err := f.buildLocal(ctx); err != nil {
			return err
		}
		if err := f.checkLayoutOnHost(ctx); err != nil {
			return err
		}
	}
	if f.has("install") {
		// Fail before disko when the agent cannot run on the target.
		if _, err := f.agentBinary(); err != nil {
			return usagef("%v", err)
		}
	}
	if f.has("disko") && f.diskoDone {
		f.info("disko", "this installer already applied this exact layout since it booted and /mnt is mounted: "+
			"nothing is erased again and the install resumes (reboot the installer to start from scratch)")
	} else if f.has("disko") {
		if err := f.disko(ctx); err != nil {
			return &PhaseError{Phase: "disko", Err: err}
		}
	}
	if f.has("install") {
		if err := f.install(ctx); err != nil {
			return &PhaseError{Phase: "install", Err: err}
		}
	}
	if f.has("reboot") {
		if err := f.reboot(ctx); err != nil {
			return &PhaseError{Phase: "reboot", Err: err}
		}
	}
	f.step("done", "finished phases %s", strings.Join(f.o.Phases, ","))
	return nil
}

// buildLocal evaluates and renders the layout (disko phase) and builds
// the system (install or reboot phase) on this machine.
func (f *flow) buildLocal(ctx context.Context) error {
	if f.has("disko") {
		if err := f.loadLayout(ctx); err != nil {
			return err
		}
	}
	if f.has("install") || f.has("reboot") {
		if err := f.buildSystem(ctx); err != nil {
			return err
		}
	}
	if f.has("reboot") {
		if err := f.readBootConfig(ctx); err != nil {
			return err
		}
	}
	return nil
}

// checkLayoutOnHost finds out whether the installer already applied this
// layout (a resumed run) and otherwise checks the layout's disks on the
// host and lists, and asks about, what the disko phase will erase.
func (f *flow) checkLayoutOnHost(ctx context.Context) error {
	if f.layout == nil {
		return nil
	}
	if f.facts.IsInstaller && f.wipes() {
		f.diskoDone = f.layoutAlreadyApplied(ctx)
	}
	if f.diskoDone {
		return nil
	}
	return f.checkDisks(ctx)
}

// loadLayout evaluates, validates and renders the disko layout locally.
func (f *flow) loadLayout(ctx context.Context) error {
	if f.o.StorePaths != nil {
		return usagef("%s: the disko phase with --store-paths (a prebuilt disko script needs Nix on the target); use --flake", notImplementedMsg)
	}
	attr := flakeLayoutAttr(f.o.FlakeRef, f.o.FlakeAttr)
	f.step("build", "evaluating the disk layout %s", attr)
	data, err := f.nix.EvalLayout(ctx, attr)
	if err != nil {
		return fmt.Errorf("evaluate the disk layout: %w", err)
	}
	layout, err := disko.Parse(unwrapDiskoDevices(data))
	if err != nil {
		return fmt.Errorf("disk layout of %s: %w", f.o.Flake, err)
	}
	mode, err := diskoMode(f.o.DiskoMode)
	if err != nil {
		return err
	}
	script, err := layout.Script(mode, disko.RenderOptions{RootMountpoint: "/mnt"})
	if err != nil {
		return fmt.Errorf("render the disk layout: %w", err)
	}
	needs, err := layout.Needs(mode)
	if err != nil {
		return fmt.Errorf("render the disk layout: %w", err)
	}
	if len(needs.Passphrases) > 0 {
		if _, ok := terminal(f.env.Stdin); !ok {
			return &phase.Refusal{Check: phase.Disko, Problems: []string{fmt.Sprintf(
				"the layout's LUKS %s %s for a passphrase, and there is no terminal to type it on; "+
					"give the layout settings.keyFile or passwordFile and the file with --disk-encryption-keys REMOTE LOCAL, or run nixos-via from a terminal",
				plural(len(needs.Passphrases), "device", "devices")+" "+strings.Join(needs.Passphrases, ", "), plural(len(needs.Passphrases), "asks", "ask"))}}
		}
	}
	f.layout, f.script, f.needs = layout, script, needs
	return nil
}

// plural is one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// requirements is what the rendered script and the install steps after it
// need on the installer, with the disks' devices.
func (f *flow) requirements() diskorun.Requirements {
	req := diskorun.Requirements{Tools: f.needs.Tools}
	if f.has("install") {
		req.Tools = append(append([]string(nil), req.Tools...), install.Tools()...)
	}
	for _, k := range f.needs.KeyFiles {
		req.Files = append(req.Files, diskorun.File{Path: k.Path, What: k.JSONPath})
	}
	for _, t := range f.layout.WipeTargets() {
		if n := f.needs.DiskMinBytes[t.Name]; n > 0 {
			req.Disks = append(req.Disks, diskorun.Disk{Name: t.Name, Device: t.Device, MinBytes: n})
		}
	}
	return req
}

// keysSurviveKexec refuses, before the kexec, a layout whose key files
// are neither given with --disk-encryption-keys nor devices: the installer
// starts from its own image, so a file of the old system is not there.
func (f *flow) keysSurviveKexec() error {
	given := map[string]bool{}
	for _, k := range f.o.DiskEncryptionKey {
		given[k.Remote] = true
	}
	var problems []string
	for _, k := range f.needs.KeyFiles {
		if !given[k.Path] && !strings.HasPrefix(k.Path, "/dev/") {
			problems = append(problems, fmt.Sprintf("%s: %s is read by the disko script, but the installer starts from its own image and no --disk-encryption-keys %s LOCAL_FILE brings it",
				k.JSONPath, k.Path, k.Path))
		}
	}
	if len(problems) > 0 {
		return &phase.Refusal{Check: phase.Disko, Problems: problems}
	}
	return nil
}

// diskoMode maps nixos-anywhere's --disko-mode to a script mode.
func diskoMode(m string) (disko.Mode, error) {
	switch m {
	case "disko", "":
		return disko.ParseMode("destroy,format,mount")
	case "format":
		return disko.ParseMode("format")
	case "mount":
		return disko.ParseMode("mount")
	}
	return 0, usagef("--disko-mode %q: want disko, format or mount", m)
}

func (f *flow) wipes() bool { return f.o.DiskoMode == "disko" || f.o.DiskoMode == "" }

// checkDisks makes sure every disk the layout names exists on the host and
// shows what will be wiped, before anything is touched.
func (f *flow) checkDisks(ctx context.Context) error {
	targets := f.layout.WipeTargets()
	var script strings.Builder
	for _, t := range targets {
		fmt.Fprintf(&script, "d=%s; if [ -b \"$d\" ]; then printf 'ok\\t%%s\\t%%s\\n' \"$d\" \"$(readlink -f \"$d\")\"; else printf 'missing\\t%%s\\n' \"$d\"; fi\n", target.ShellQuote(t.Device))
	}
	out, err := f.conn.Output(ctx, script.String(), nil)
	if err != nil {
		return fmt.Errorf("check the layout's disks on the host: %w", err)
	}
	resolved := map[string]string{}
	var missing []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Split(line, "\t")
		switch {
		case len(fields) == 3 && fields[0] == "ok":
			resolved[fields[1]] = fields[2]
		case len(fields) >= 2 && fields[0] == "missing":
			missing = append(missing, fields[1])
		}
	}
	if len(missing) > 0 {
		var have []string
		for _, d := range f.facts.Disks {
			have = append(have, fmt.Sprintf("%s (%s)", d.Path, gib(d.SizeBytes)))
		}
		return &phase.Refusal{Check: "disks", Msg: fmt.Sprintf("the layout names %s, which the host does not have; its disks are: %s",
			strings.Join(missing, ", "), orNA(strings.Join(have, ", ")))}
	}
	if !f.wipes() {
		return nil
	}
	f.step("disko", "the disko phase will ERASE these disks:")
	for _, t := range targets {
		desc := ""
		for _, d := range f.facts.Disks {
			if d.Path == resolved[t.Device] {
				desc = fmt.Sprintf("%s, %s", gib(d.SizeBytes), orNA(d.Model))
				if len(d.Mounted) > 0 {
					desc += ", in use now: " + strings.Join(d.Mounted, ",")
				}
			}
		}
		dev := t.Device
		if r := resolved[t.Device]; r != "" && r != t.Device {
			dev += " -> " + r
		}
		f.info("disko", "disk.%s: %s (%s)", t.Name, dev, orNA(desc))
	}
	return f.confirm()
}

// confirm asks before wiping when a person is at a terminal and --yes was
// not given. Without a terminal the run goes on, as nixos-anywhere does
// (automation); the list above is still printed.
func (f *flow) confirm() error {
	if f.o.Yes {
		return nil
	}
	in, ok := terminal(f.env.Stdin)
	if !ok {
		return nil
	}
	fmt.Fprint(f.env.Stderr, "Type \"yes\" to erase them: ")
	line, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return &phase.Refusal{Check: "confirm", Msg: "not confirmed; nothing was touched"}
	}
	return nil
}

func (f *flow) cacheDir() string {
	if d := f.env.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "nixos-via", "kexec")
	}
	return filepath.Join(home(f.env), ".cache", "nixos-via", "kexec")
}

func (f *flow) fetchTarball(ctx context.Context, src string) (*kexec.Tarball, error) {
	f.step("kexec", "installer tarball %s", src)
	tb, err := kexec.Fetch(ctx, src, f.cacheDir(), f.o.KexecSHA256, &http.Client{Timeout: 30 * time.Minute}, f.ui)
	if err != nil {
		return nil, err
	}
	f.info("kexec", "sha256 %s, %s (kernel %s, initrd %s, %s unpacked)", tb.SHA256, event.Bytes(tb.Bytes),
		event.Bytes(tb.KernelBytes), event.Bytes(tb.InitrdBytes), event.Bytes(tb.InitrdUnpacked))
	return tb, nil
}

// kexec runs the kexec phase: pre-flight, upload, run, reconnect.
func (f *flow) kexec(ctx context.Context, tb *kexec.Tarball) error {
	if f.facts.IsInstaller && !f.o.ForceKexec {
		f.info("kexec", "the host already runs an installer: skipping kexec (--force-kexec to kexec anyway)")
		return nil
	}
	// Checks that need no tarball come first, so a refusal costs no download.
	if _, err := kexec.Preflight(kexec.PreflightInput{Facts: f.facts, CustomImage: f.o.Kexec != "", WorkDirFree: -1}); err != nil {
		return err
	}
	src := f.o.Kexec
	if src == "" {
		url, err := kexec.DefaultURL(f.facts.Arch)
		if err != nil {
			return &phase.Refusal{Check: "arch", Msg: err.Error()}
		}
		src = url
	}
	var w kexec.WorkDir
	onHost := false
	if tb == nil && kexec.IsURL(src) {
		// A host in a data centre is usually closer to the release than
		// we are: let it fetch the tarball itself when it can.
		if p := kexec.ProbeDownload(ctx, f.conn, f.facts, src); p.OK {
			var err error
			if w, err = kexec.PrepareWorkDir(ctx, f.conn); err != nil {
				return &PhaseError{Phase: "kexec", Err: err}
			}
			if err := roomToDownload(f.facts, w, p.Bytes); err != nil {
				kexec.RemoveWorkDir(ctx, f.conn, w)
				return err
			}
			f.step("kexec", "the host downloads the installer from %s", src)
			if tb, err = kexec.DownloadOnHost(ctx, f.conn, f.facts, src, f.o.KexecSHA256, w); err != nil {
				kexec.RemoveWorkDir(ctx, f.conn, w)
				return &PhaseError{Phase: "kexec", Err: err}
			}
			unpacked := event.Bytes(tb.InitrdUnpacked) + " unpacked"
			if tb.InitrdEstimated {
				unpacked += " (estimated: the host could not decompress it)"
			}
			f.info("kexec", "sha256 %s, %s (kernel %s, initrd %s, %s)", tb.SHA256, event.Bytes(tb.Bytes), event.Bytes(tb.KernelBytes), event.Bytes(tb.InitrdBytes), unpacked)
			onHost = true
		} else {
			f.info("kexec", "the host cannot fetch %s itself (%s): it comes from here", src, p.Why)
		}
	}
	if tb == nil {
		var err error
		if tb, err = f.fetchTarball(ctx, src); err != nil {
			return err
		}
	}
	if w.Path == "" {
		var err error
		if w, err = kexec.PrepareWorkDir(ctx, f.conn); err != nil {
			return &PhaseError{Phase: "kexec", Err: err}
		}
	}
	in := kexec.PreflightInput{Facts: f.facts, Tarball: tb, CustomImage: f.o.Kexec != "",
		ForceKexec: f.o.ForceKexec, WorkDirFree: w.Free, WorkDirRAM: w.InRAM()}
	if onHost {
		in.WorkDirFree = -1 // the files are already there
	} else {
		staged, err := kexec.StagedBytes(ctx, f.conn, w, tb)
		if err != nil {
			kexec.RemoveWorkDir(ctx, f.conn, w)
			return &PhaseError{Phase: "kexec", Err: err}
		}
		in.Staged = staged
	}
	warnings, err := kexec.Preflight(in)
	if err != nil {
		kexec.RemoveWorkDir(ctx, f.conn, w)
		return err
	}
	for _, m := range warnings {
		f.warn(m)
	}
	if !onHost {
		f.step("kexec", "uploading the installer to %s", w.Path)
		if err := kexec.Upload(ctx, f.conn, tb, w, f.ui); err != nil {
			// What was sent stays in kexec.StagingDir: a re-run resumes it.
			kexec.RemoveWorkDir(ctx, f.conn, w)
			return &PhaseError{Phase: "kexec", Err: err}
		}
	}
	key, err := f.accessKey(ctx)
	if err != nil {
		kexec.RemoveWorkDir(ctx, f.conn, w)
		return err
	}
	var signers []ssh.Signer
	if key != nil {
		signers = []ssh.Signer{key.Signer}
	}
	f.step("kexec", "loading the installer kernel")
	runOut, err := kexec.RunScript(ctx, f.conn, w, f.o.KexecExtraFlags)
	if err != nil {
		return &PhaseError{Phase: "kexec", Err: f.keyLeft(ctx, key, err)}
	}
	conn, facts, err := kexec.Reconnect(ctx, f.conn, kexec.Options{PostKexecPort: f.o.PostKexecPort,
		DownTimeout: f.o.TimeoutKexec, UpTimeout: f.o.TimeoutKexec, Home: home(f.env), Events: f.ui, Signers: signers})
	if err != nil {
		// The last thing the host said is run's output: show it.
		var ke *kexec.Error
		if errors.As(err, &ke) && ke.Output == "" {
			ke.Output = lastLines(runOut, 20)
		}
		return &PhaseError{Phase: "kexec", Err: f.keyLeft(ctx, key, err)}
	}
	f.conn, f.facts = conn, facts
	f.info("kexec", "the installer answers with the host's own key (%s), %d MiB RAM", facts.OSName, facts.MemTotalKiB>>10)
	return nil
}

// accessKey gives the installer a key we hold when it would trust none of
// ours (kexec.EnsureAccessKey); nil when none is needed. A key that cannot
// be added refuses the kexec.
func (f *flow) accessKey(ctx context.Context) (*kexec.AccessKey, error) {
	key, err := kexec.EnsureAccessKey(ctx, f.conn, f.facts)
	if err != nil {
		return nil, &phase.Refusal{Check: "installer-login", Msg: fmt.Sprintf("the installer would let nobody in without a key of ours: %v", err)}
	}
	if key != nil {
		f.info("kexec", "none of our keys is in the authorized_keys files the installer takes over: added this run's throwaway key to %s (%s); it is used after kexec and leaves with the old system",
			strings.Join(key.Files, " and "), key.Line)
	}
	return key, nil
}

// keyLeft is err of a kexec that failed after accessKey added key and
// before the installer answered: the key is taken out again while the old
// system still answers, else err says where it is and how to remove it.
func (f *flow) keyLeft(ctx context.Context, key *kexec.AccessKey, err error) error {
	if key == nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	files := strings.Join(key.Files, " and ")
	if rmErr := key.Remove(rctx, f.conn); rmErr == nil {
		f.info("kexec", "the throwaway key %s is removed from %s again", key.Comment, files)
		return err
	}
	return fmt.Errorf("%w\n%s", err, key.Where())
}

// roomToDownload refuses a host download that would not fit: the tarball
// and its unpacked files need about twice its size where they land (and,
// on a RAM filesystem, in memory).
func roomToDownload(f *target.Facts, w kexec.WorkDir, size int64) error {
	if size <= 0 {
		return nil
	}
	if w.Free >= 0 && w.Free < 2*size {
		return &phase.Refusal{Check: "disk-space", Msg: fmt.Sprintf("the host has %d MiB free in %s but downloading and unpacking the %d MiB installer needs about %d MiB",
			w.Free>>20, w.Path, size>>20, 2*size>>20)}
	}
	if w.InRAM() && f.MemAvailKiB*1024 < 2*size+kexec.LoadMargin {
		return &phase.Refusal{Check: "memory", Msg: fmt.Sprintf("the host has %d MiB available and %s is in RAM, but downloading and unpacking the %d MiB installer there needs about %d MiB",
			f.MemAvailKiB>>10, w.Path, size>>20, (2*size+kexec.LoadMargin)>>20)}
	}
	return nil
}

// disko uploads the LUKS key files and runs the rendered layout script.
func (f *flow) disko(ctx context.Context) error {
	for _, k := range f.o.DiskEncryptionKey {
		if err := f.uploadSecret(ctx, k.Local, k.Remote); err != nil {
			return err
		}
		f.info("disko", "key file %s copied to the installer (mode 0600)", k.Remote)
	}
	// Nothing is wiped that the installer could not finish.
	f.step("disko", "checking the installer for what the layout and the install need")
	if err := diskorun.Precheck(ctx, f.conn, f.requirements()); err != nil {
		return err
	}
	f.step("disko", "partitioning, formatting and mounting under /mnt")
	// The wipe was listed and confirmed in checkDisks, before kexec.
	if len(f.needs.Passphrases) > 0 {
		// loadLayout made sure there is a terminal.
		f.info("disko", "LUKS %s: type the passphrase when asked (twice for a new container); it is not shown and goes nowhere else", strings.Join(f.needs.Passphrases, ", "))
		if err := f.runOnTerminal(ctx, "disko script", f.script, "--yes-wipe-all-disks"); err != nil {
			return err
		}
	} else if err := f.runScript(ctx, "disko", "disko script", f.script, "--yes-wipe-all-disks"); err != nil {
		return err
	}
	if f.wipes() {
		// Remember, in the installer's RAM, that this layout is in place,
		// so a run cut later can be repeated without erasing the copy.
		cmd := "mkdir -p /run/nixos-via && echo " + f.layoutDigest() + " > " + diskoMarker
		if _, err := f.conn.Output(ctx, cmd, nil); err != nil {
			return fmt.Errorf("record the applied layout: %w", err)
		}
	}
	return nil
}

// diskoMarker holds the digest of the last layout script the installer
// ran; it lives in RAM, so it is gone after any reboot.
const diskoMarker = "/run/nixos-via/disko-applied"

func (f *flow) layoutDigest() string {
	sum := sha256.Sum256([]byte(f.script))
	return hex.EncodeToString(sum[:])
}

// layoutAlreadyApplied says the installer ran this very layout since it
// booted and /mnt is still mounted.
func (f *flow) layoutAlreadyApplied(ctx context.Context) bool {
	out, err := f.conn.Output(ctx, "cat "+diskoMarker+" 2>/dev/null; grep -q ' /mnt ' /proc/mounts && echo mounted", nil)
	if err != nil {
		return false
	}
	lines := strings.Fields(string(out))
	return len(lines) == 2 && lines[0] == f.layoutDigest() && lines[1] == "mounted"
}

// uploadSecret copies a local file (or pipe) to remote as root with mode
// 0600, over stdin: never on a command line.
func (f *flow) uploadSecret(ctx context.Context, local, remote string) error {
	in, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("--disk-encryption-keys: %w", err)
	}
	defer in.Close()
	dir := filepath.Dir(remote)
	cmd := fmt.Sprintf("umask 077 && mkdir -p %s && cat > %s && chmod 600 %s", target.ShellQuote(dir), target.ShellQuote(remote), target.ShellQuote(remote))
	if _, err := f.conn.Output(ctx, cmd, in); err != nil {
		return fmt.Errorf("copy key file to %s: %w", remote, err)
	}
	return nil
}

// runScript runs a shell script as root on the target, showing its output
// line by line (target.Conn.RunScript).
func (f *flow) runScript(ctx context.Context, phase, name, script string, args ...string) error {
	return f.conn.RunScript(ctx, name, script, args, func(line string) { f.info(phase, "%s", line) })
}

// runOnTerminal runs a script as root on the target with this process's
// terminal as its own (raw here, echo off there), for the passphrase
// prompts of the disko script. The reader of the terminal may stay blocked
// until the next key press after the script ends; nothing reads the
// terminal after the disko phase.
func (f *flow) runOnTerminal(ctx context.Context, name, script string, args ...string) error {
	in, ok := terminal(f.env.Stdin)
	if !ok {
		return fmt.Errorf("%s: no terminal", name)
	}
	state, err := term.MakeRaw(int(in.Fd()))
	if err != nil {
		return fmt.Errorf("%s: put the terminal in raw mode: %w", name, err)
	}
	defer term.Restore(int(in.Fd()), state)
	w, h, _ := term.GetSize(int(in.Fd()))
	return f.conn.RunScriptOnTerminal(ctx, name, script, args, target.Terminal{In: in, Out: f.env.Stderr, Term: f.env.Getenv("TERM"), Width: w, Height: h})
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
