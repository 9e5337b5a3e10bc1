package target_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/sshtest"
)

func TestUploadAppend(t *testing.T) {
	tests := []struct {
		name     string
		existing string // "" = no file
		offset   int64
		data     string
		want     string // the file afterwards
		wantErr  string
	}{
		{name: "creates a new file", offset: 0, data: "hello", want: "hello"},
		{name: "empties an old file at offset 0", existing: "old bytes that must go", offset: 0, data: "hello", want: "hello"},
		{name: "appends at the file's size", existing: "hello ", offset: 6, data: "world", want: "hello world"},
		{name: "refuses an offset that is not the size", existing: "hello", offset: 3, data: "world", want: "hello", wantErr: "has 5 bytes, want 3 to append to"},
		{name: "refuses to append to a missing file", offset: 4, data: "world", wantErr: "upload"},
	}
	for _, via := range []struct {
		name   string
		noSFTP bool
	}{{"sftp", false}, {"cat-fallback", true}} {
		t.Run(via.name, func(t *testing.T) {
			s := sshtest.Start(t, sshtest.Options{NoSFTP: via.noSFTP})
			c := dial(t, opts(s))
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					dst := filepath.Join(t.TempDir(), "sub", "file.part")
					if tc.existing != "" {
						os.MkdirAll(filepath.Dir(dst), 0o755)
						if err := os.WriteFile(dst, []byte(tc.existing), 0o644); err != nil {
							t.Fatal(err)
						}
					}
					var sent, total int64
					err := c.UploadAppend(ctxT(t, 30*time.Second), strings.NewReader(tc.data), int64(len(tc.data)), dst, tc.offset,
						func(done, tot int64) { sent, total = done, tot })
					if tc.wantErr != "" {
						if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
							t.Fatalf("UploadAppend err = %v, want it to contain %q", err, tc.wantErr)
						}
					} else if err != nil {
						t.Fatalf("UploadAppend: %v", err)
					}
					got, _ := os.ReadFile(dst)
					if string(got) != tc.want {
						t.Errorf("file = %q, want %q", got, tc.want)
					}
					if tc.wantErr != "" {
						return
					}
					if sent != int64(len(tc.data)) || total != int64(len(tc.data)) {
						t.Errorf("progress ended at %d of %d, want %d of %d (the bytes sent, not the offset)", sent, total, len(tc.data), len(tc.data))
					}
					if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != 0o600 {
						t.Errorf("mode = %v (%v), want 0600 (partial data is private)", st.Mode().Perm(), err)
					}
				})
			}
		})
	}
}

// Every upload to a host without SFTP first asks for the subsystem; a
// refused request must not keep its session open, or the host's
// MaxSessions (10) stops the eleventh upload on one connection.
func TestManyUploadsWithoutSFTPOnOneConnection(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{NoSFTP: true})
	c := dial(t, opts(s))
	dir := t.TempDir()
	for i := 0; i < 15; i++ {
		dst := filepath.Join(dir, "f"+strconv.Itoa(i))
		if err := c.Upload(ctxT(t, 30*time.Second), strings.NewReader("x"), 1, dst, 0o644, nil); err != nil {
			t.Fatalf("upload #%d: %v", i+1, err)
		}
	}
}
