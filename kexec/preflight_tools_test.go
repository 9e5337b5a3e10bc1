package kexec

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/nixos-via/nixos-via/internal/phase"
	"github.com/nixos-via/nixos-via/internal/sshtest"
	"github.com/nixos-via/nixos-via/internal/target"
)

// TestPreflightRefusesMissingRunCommands: the host commands the chosen
// tarball's run calls are checked before anything is uploaded, and every
// missing one is named (exit 5); our self-contained run needs only sh.
func TestPreflightRefusesMissingRunCommands(t *testing.T) {
	ctx := context.Background()
	ours, err := Fetch(ctx, ourTarball(t).tarball, t.TempDir(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	official, err := Fetch(ctx, writeFile(t, makeTarball(t, installerEntries("#!/bin/sh\nfind . | cpio -o -H newc | gzip -9 >> initrd\n", 4096))), t.TempDir(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !SelfContainedRun(ours) || SelfContainedRun(official) {
		t.Fatalf("SelfContainedRun(ours) = %v, (other) = %v; want true, false", SelfContainedRun(ours), SelfContainedRun(official))
	}
	lacking := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, c := range target.ProbedCommands {
			m[c] = true
		}
		for _, n := range names {
			m[n] = false
		}
		return m
	}
	tests := []struct {
		name     string
		commands map[string]bool
		tb       *Tarball
		custom   bool
		want     []string // missing commands named; nil: no refusal
	}{
		{"nixos-images run, no cpio nor gzip", lacking("cpio", "gzip"), official, true, []string{"cpio", "gzip"}},
		{"nixos-images run, no nohup", lacking("nohup", "tar"), official, true, []string{"nohup"}},
		{"default URL, tarball not fetched yet", lacking("cpio", "readlink"), nil, false, []string{"cpio", "readlink"}},
		{"--kexec given, tarball not fetched yet", lacking("cpio"), nil, true, nil},
		{"our run, no cpio, gzip, find", lacking("cpio", "gzip", "find", "dirname", "nohup"), ours, true, nil},
		{"our run, no sh", lacking("sh"), ours, true, []string{"sh"}},
		{"everything there", lacking(), official, true, nil},
		{"facts without the command list", nil, official, true, nil},
		{"sort missing is no reason", lacking("sort", "dmesg", "tail"), official, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := linuxFacts()
			f.Tools.Commands = tc.commands
			_, err := Preflight(PreflightInput{Facts: f, Tarball: tc.tb, CustomImage: tc.custom, WorkDirFree: -1})
			var r *phase.Refusal
			if tc.want == nil {
				if errors.As(err, &r) && r.Check == "tools" {
					t.Fatalf("Preflight = %v, want no tools refusal", err)
				}
				return
			}
			if !errors.As(err, &r) || r.Check != "tools" || !r.Refused() {
				t.Fatalf("Preflight = %v, want a tools *Refusal", err)
			}
			if got, want := MissingRunCommands(f, tc.tb, tc.custom), tc.want; strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("missing = %v, want %v", got, want)
			}
			for _, c := range tc.want {
				if !strings.Contains(r.Msg, c) {
					t.Errorf("refusal %q does not name %s", r.Msg, c)
				}
			}
		})
	}
}

// TestFactsProbeTheRunCommands: the facts probe of a real host reports
// each command of both runs as the host's PATH has it.
func TestFactsProbeTheRunCommands(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	c := connectTo(t, s.Addr, s)
	f, err := c.ProbeFacts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range append(append([]string{}, officialRunCommands...), ourRunCommands...) {
		got, probed := f.Tools.Commands[cmd]
		_, lookErr := exec.LookPath(cmd)
		if want := lookErr == nil; !probed || got != want {
			t.Errorf("commands[%s] = %v (probed %v), want %v", cmd, got, probed, want)
		}
	}
}
