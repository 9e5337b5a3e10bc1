package localvm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/crypto/ssh"

	"github.com/nixos-via/nixos-via/images/cpio"
	"github.com/nixos-via/nixos-via/kexec"
)

// Installer is an installer tarball's kernel, initrd and kernel command
// line, ready for QEMU's direct kernel boot, with what kexec/run would
// have carried over from a host: a throwaway host key and a throwaway
// key root trusts, both held here only.
type Installer struct {
	Kernel, Initrd, Cmdline string
	// Signer is the key the installer's root trusts; HostKey the host key
	// it presents (nothing else is accepted).
	Signer  ssh.Signer
	HostKey ssh.PublicKey
}

// InstallerFrom takes the installer out of tb (unpacked) into dir: the
// kernel as it is, the command line read from kexec/run, and the initrd
// with one more gzip newc archive appended, as kexec/run appends it
// (ssh/authorized_keys, ssh/ssh_host_ed25519_key and empty network
// views, which the nixos-images installer and ours restore at boot).
func InstallerFrom(tb *kexec.Tarball, dir string) (*Installer, error) {
	run, err := os.ReadFile(filepath.Join(tb.Dir, "kexec", "run"))
	if err != nil {
		return nil, fmt.Errorf("read the installer's kexec/run: %w", err)
	}
	cmdline, err := Cmdline(string(run))
	if err != nil {
		return nil, fmt.Errorf("installer tarball %s: %w", tb.Source, err)
	}
	if !strings.Contains(" "+cmdline+" ", " console=ttyS0") {
		cmdline += " console=ttyS0,115200" // the console log of the VM
	}
	in := &Installer{Kernel: filepath.Join(dir, "bzImage"), Initrd: filepath.Join(dir, "initrd"), Cmdline: cmdline}
	if err := copyFile(filepath.Join(tb.Dir, "kexec", "bzImage"), in.Kernel); err != nil {
		return nil, err
	}
	if err := copyFile(filepath.Join(tb.Dir, "kexec", "initrd"), in.Initrd); err != nil {
		return nil, err
	}
	files, err := in.keys()
	if err != nil {
		return nil, err
	}
	if err := appendArchive(in.Initrd, files); err != nil {
		return nil, err
	}
	return in, nil
}

// keys makes the throwaway keys and the files that carry them.
func (in *Installer) keys() ([]cpioFile, error) {
	_, client, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the VM's access key: %w", err)
	}
	hostPub, host, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the VM's host key: %w", err)
	}
	if in.Signer, err = ssh.NewSignerFromKey(client); err != nil {
		return nil, fmt.Errorf("ssh.NewSignerFromKey: %w", err)
	}
	if in.HostKey, err = ssh.NewPublicKey(hostPub); err != nil {
		return nil, fmt.Errorf("ssh.NewPublicKey: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(host, "nixos-via --vm-test")
	if err != nil {
		return nil, fmt.Errorf("ssh.MarshalPrivateKey: %w", err)
	}
	return []cpioFile{
		{name: "ssh", dir: true},
		{name: "ssh/authorized_keys", data: ssh.MarshalAuthorizedKey(in.Signer.PublicKey()), mode: 0o600},
		{name: "ssh/ssh_host_ed25519_key", data: pem.EncodeToMemory(block), mode: 0o600},
		{name: "ssh/ssh_host_ed25519_key.pub", data: ssh.MarshalAuthorizedKey(in.HostKey), mode: 0o644},
		// The nixos-images installer copies *.json at boot and fails
		// without any; empty views restore nothing (DHCP does the rest).
		{name: "addrs.json", data: []byte("[]\n"), mode: 0o644},
		{name: "routes-v4.json", data: []byte("[]\n"), mode: 0o644},
		{name: "routes-v6.json", data: []byte("[]\n"), mode: 0o644},
	}, nil
}

type cpioFile struct {
	name string
	data []byte
	mode uint32
	dir  bool
}

// appendArchive appends files to initrd as one gzip newc archive (the
// kernel unpacks concatenated archives in order).
func appendArchive(initrd string, files []cpioFile) error {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	w := cpio.NewWriter(gz)
	for _, f := range files {
		h := &cpio.Header{Name: f.name, Mode: cpio.TypeReg | f.mode, Size: int64(len(f.data))}
		if f.dir {
			h = &cpio.Header{Name: f.name, Mode: cpio.TypeDir | 0o700}
		}
		if err := w.WriteHeader(h); err != nil {
			return fmt.Errorf("pack the installer's keys: %w", err)
		}
		if _, err := w.Write(f.data); err != nil {
			return fmt.Errorf("pack the installer's keys: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("pack the installer's keys: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("pack the installer's keys: %w", err)
	}
	f, err := os.OpenFile(initrd, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("append the keys to the initrd: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("append the keys to the initrd: %w", err)
	}
	return f.Close()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy the installer's %s: %w", filepath.Base(src), err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("copy the installer's %s: %w", filepath.Base(src), err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy the installer's %s: %w", filepath.Base(src), err)
	}
	return out.Close()
}

var (
	// nixos-images' run: init="..." and kernelParams="..." (shell-quoted
	// words), joined as "init=$init $kernelParams".
	runInit   = regexp.MustCompile(`(?m)^init="([^"$` + "`" + `\\]+)"\s*$`)
	runParams = regexp.MustCompile(`(?m)^kernelParams="([^"$` + "`" + `\\]*)"\s*$`)
	// A literal --command-line, as images.BuildInstaller writes it.
	runLiteral = regexp.MustCompile(`--command-line[= ]["']([^"'$` + "`" + `\\]*)["']`)
)

// Cmdline is the kernel command line the installer's kexec/run script
// would pass to kexec --load.
func Cmdline(run string) (string, error) {
	if m := runInit.FindStringSubmatch(run); m != nil {
		words := []string{"init=" + m[1]}
		if p := runParams.FindStringSubmatch(run); p != nil {
			words = append(words, strings.Fields(strings.ReplaceAll(p[1], "'", ""))...)
		}
		return strings.Join(words, " "), nil
	}
	if m := runLiteral.FindStringSubmatch(run); m != nil {
		return strings.Join(strings.Fields(m[1]), " "), nil
	}
	return "", fmt.Errorf("kexec/run names no kernel command line this can read (neither init=\"...\" with kernelParams=\"...\" as nixos-images writes it, nor a literal --command-line)")
}
