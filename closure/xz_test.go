package closure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand"
	"os/exec"
	"runtime"
	"testing"

	"github.com/ulikunitz/xz"
)

// xzSample is 3 MiB that compresses as a NAR does: text, and some noise.
func xzSample() []byte {
	rng := rand.New(rand.NewSource(1))
	var b bytes.Buffer
	for b.Len() < 3<<20 {
		if rng.Intn(4) == 0 {
			noise := make([]byte, 4096)
			rng.Read(noise)
			b.Write(noise)
		} else {
			b.WriteString("lib/libfoo.so.1 -> libfoo.so.1.2.3; share/doc/foo/README\n")
		}
	}
	return b.Bytes()
}

func xzGo(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := xz.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// xzTool compresses with xz(1) and the given flags (skipped without it).
func xzTool(t *testing.T, data []byte, flags ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz not installed")
	}
	cmd := exec.Command("xz", append([]string{"-c"}, flags...)...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz %v: %v", flags, err)
	}
	return out
}

// setXZDict rewrites the dictionary size code of an xz file's first block
// (and its header's checksum), as a hostile cache could; data that is not
// xz with LZMA2 comes back as it is.
func setXZDict(data []byte, code byte) []byte {
	if len(data) < 13 || len(data) < 12+(int(data[12])+1)*4 {
		return data
	}
	data = bytes.Clone(data)
	h := data[12:]
	size := (int(h[0]) + 1) * 4
	r := bytes.NewReader(h[2 : size-4])
	if h[1]&0x40 != 0 {
		binary.ReadUvarint(r)
	}
	if h[1]&0x80 != 0 {
		binary.ReadUvarint(r)
	}
	id, _ := binary.ReadUvarint(r)
	props, _ := binary.ReadUvarint(r)
	if id != 0x21 || props != 1 {
		return data
	}
	h[size-4-r.Len()] = code
	binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
	return data
}

func TestXZReaderDecodes(t *testing.T) {
	sample := xzSample()
	tests := []struct {
		name string
		xz   func(t *testing.T) []byte
		want []byte
	}{
		{"go writer", func(t *testing.T) []byte { return xzGo(t, sample) }, sample},
		{"empty", func(t *testing.T) []byte { return xzGo(t, nil) }, nil},
		{"xz -6 (as Nix)", func(t *testing.T) []byte { return xzTool(t, sample, "-6") }, sample},
		{"xz -9 (64 MiB dictionary)", func(t *testing.T) []byte { return xzTool(t, sample, "-9") }, sample},
		{"xz -0 --check=sha256", func(t *testing.T) []byte { return xzTool(t, sample, "-0", "--check=sha256") }, sample},
		{"xz --check=none", func(t *testing.T) []byte { return xzTool(t, sample, "--check=none") }, sample},
		{"multithreaded, blocks with sizes", func(t *testing.T) []byte { return xzTool(t, sample, "-T2", "--block-size=1MiB") }, sample},
		{"two streams and padding", func(t *testing.T) []byte {
			a := xzTool(t, sample[:1000])
			b := xzTool(t, sample[1000:])
			return append(append(a, 0, 0, 0, 0, 0, 0, 0, 0), b...)
		}, sample},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := newXZReader(bytes.NewReader(tt.xz(t)), maxXZDict, 0)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("decoded %d bytes, want the %d compressed", len(got), len(tt.want))
			}
		})
	}
}

// A block that asks for a dictionary beyond the bound is refused before
// anything is allocated for it; one at the bound decodes.
func TestXZReaderBoundsTheDictionary(t *testing.T) {
	sample := xzSample()[:200<<10]
	valid := xzGo(t, sample)
	tests := []struct {
		name    string
		code    byte  // the dictionary size code
		size    int64 // the output's size as the caller knows it, or 0
		refused bool
	}{
		{"64 MiB", 28, 0, false},
		{"64 MiB, 200 KiB of output", 28, int64(len(sample)), false},
		{"96 MiB", 29, 0, true},
		{"4 GiB", 40, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			r, err := newXZReader(bytes.NewReader(setXZDict(valid, tt.code)), maxXZDict, tt.size)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(r)
			}
			runtime.ReadMemStats(&after)
			allocated := after.TotalAlloc - before.TotalAlloc
			if tt.refused {
				if !errors.Is(err, errXZDict) {
					t.Errorf("decoding gave %d bytes and error %v, want %v", len(got), err, errXZDict)
				}
				if allocated > 16<<20 {
					t.Errorf("allocated %d MiB for a refused stream", allocated>>20)
				}
				return
			}
			if err != nil || !bytes.Equal(got, sample) {
				t.Errorf("decoding gave %d bytes and error %v, want the %d compressed", len(got), err, len(sample))
			}
			if tt.size > 0 && allocated > 16<<20 {
				t.Errorf("allocated %d MiB for %d bytes of output", allocated>>20, tt.size)
			}
		})
	}
}
