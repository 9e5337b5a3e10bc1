package pipecmd

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestStart(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		input   string
		want    string
		wantErr bool
	}{
		{name: "what it reads comes back", args: []string{"cat"}, input: "hello\nworld\n", want: "hello\nworld\n"},
		{name: "its output, once stdin ends", args: []string{"sh", "-c", "wc -c"}, input: "abc", want: "3\n"},
		{name: "stdout ends when it exits", args: []string{"sh", "-c", "echo done"}, want: "done\n"},
		{name: "a command that is not there", args: []string{"/nonexistent/pipecmd-test"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(tt.args[0], tt.args[1:]...)
			in, out, err := Start(cmd)
			if tt.wantErr {
				if err == nil {
					t.Fatal("Start: no error")
				}
				if in != nil || out != nil {
					t.Fatalf("Start failed but returned pipes %v %v", in, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer out.Close()
			if _, err := io.WriteString(in, tt.input); err != nil {
				t.Fatalf("write: %v", err)
			}
			in.Close()
			out.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(out)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("Wait: %v", err)
			}
		})
	}
}

// A read of a silent command's stdout takes a deadline.
func TestStartDeadline(t *testing.T) {
	cmd := exec.Command("cat")
	in, out, err := Start(cmd)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer func() { in.Close(); out.Close(); cmd.Wait() }()
	out.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = out.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of a silent command: got %v, want %v", err, os.ErrDeadlineExceeded)
	}
}
