package nar

import (
	"bytes"
	"io"
	"path"
	"path/filepath"
	"testing"
)

// reencoder writes back the NAR it is fed; for canonical input the output
// equals the input byte for byte.
type reencoder struct{ e *encoder }

func (r *reencoder) open(rel string) {
	if rel != "" {
		r.e.strs("entry", "(", "name", path.Base(rel), "node")
	}
	r.e.str("(")
}

func (r *reencoder) close(rel string) {
	r.e.str(")")
	if rel != "" {
		r.e.str(")")
	}
}

func (r *reencoder) directory(rel string) error {
	r.open(rel)
	return r.e.strs("type", "directory")
}

func (r *reencoder) directoryEnd(rel string) error { r.close(rel); return nil }

func (r *reencoder) regular(rel string, exec bool, size uint64, c io.Reader) error {
	r.open(rel)
	r.e.strs("type", "regular")
	if exec {
		r.e.strs("executable", "")
	}
	r.e.str("contents")
	r.e.uint(size)
	if _, err := io.Copy(r.e.w, c); err != nil {
		return err
	}
	r.e.pad(size)
	r.close(rel)
	return nil
}

func (r *reencoder) symlink(rel, target string) error {
	r.open(rel)
	r.e.strs("type", "symlink", "target", target)
	r.close(rel)
	return nil
}

func FuzzDecode(f *testing.F) {
	f.Add(dirNAR([2]string{"a", "x"}, [2]string{"b", "yy"}))
	f.Add((&narBuilder{}).s(magic, "(", "type", "symlink", "target", "/x", ")").Bytes())
	f.Add((&narBuilder{}).s(magic, "(", "type", "regular", "executable", "", "contents", "#!", ")").Bytes())
	f.Add(dirNAR([2]string{"..", "x"}))
	nested := &narBuilder{}
	nested.s(magic, "(", "type", "directory", "entry", "(", "name", "d", "node", "(", "type", "directory", ")", ")",
		"entry", "(", "name", "l", "node", "(", "type", "symlink", "target", "d", ")", ")", ")")
	f.Add(nested.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Verify(bytes.NewReader(data))
		if err != nil {
			return
		}
		if res.Size > uint64(len(data)) {
			t.Fatalf("Verify consumed %d bytes of %d", res.Size, len(data))
		}
		consumed := data[:res.Size]
		var out bytes.Buffer
		if err := decode(bytes.NewReader(consumed), &reencoder{e: &encoder{w: &out}}); err != nil {
			t.Fatalf("decode of accepted input failed: %v", err)
		}
		var magicBuf bytes.Buffer
		(&encoder{w: &magicBuf}).str(magic)
		if got := append(magicBuf.Bytes(), out.Bytes()...); !bytes.Equal(got, consumed) {
			t.Fatalf("re-encoded NAR differs from the accepted input:\n got %q\nwant %q", got, consumed)
		}
		dest := filepath.Join(t.TempDir(), "out")
		got, err := Restore(bytes.NewReader(data), dest, RestoreOptions{Canonical: true, Workers: 1 + len(data)%4})
		if err != nil {
			t.Fatalf("Restore of input Verify accepted: %v", err)
		}
		if got != res {
			t.Fatalf("Restore result %+v, Verify result %+v", got, res)
		}
		var dump bytes.Buffer
		if _, err := Dump(&dump, dest); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dump.Bytes(), consumed) {
			t.Fatalf("NAR of the restored tree differs from the input")
		}
		if err := RemoveAll(dest); err != nil {
			t.Fatal(err)
		}
	})
}
