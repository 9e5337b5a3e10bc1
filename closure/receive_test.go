package closure

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

// fakePath makes a well-formed store path for name.
func fakePath(name string) string {
	h := sha256.Sum256([]byte(name))
	return nix.StoreDir + "/" + nar.EncodeBase32(h[:20]) + "-" + name
}

type testPath struct {
	info nix.PathInfo
	nar  []byte
}

// makePath serialises a small tree as the NAR of a fake store path.
func makePath(t *testing.T, name string, files map[string]string) testPath {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	os.Mkdir(dir, 0o755)
	for f, c := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, f), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	res, err := nar.Dump(&buf, dir)
	if err != nil {
		t.Fatal(err)
	}
	return testPath{info: nix.PathInfo{Path: fakePath(name), NarHash: res.Hash, NarSize: res.Size}, nar: buf.Bytes()}
}

// rawStream frames paths (uncompressed); mutate may tamper with each item.
func rawStream(paths []testPath, trailerPaths int, trailerBytes uint64) []byte {
	var buf bytes.Buffer
	fw := newFrameWriter(&buf)
	fw.magic()
	for _, p := range paths {
		fw.pathHeader(p.info)
		fw.Write(p.nar)
	}
	fw.trailer(trailerPaths, trailerBytes)
	fw.flush()
	return buf.Bytes()
}

func compress(t *testing.T, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, _ := zstd.NewWriter(&buf)
	enc.Write(raw)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sum(paths []testPath) (int, uint64) {
	var n uint64
	for _, p := range paths {
		n += p.info.NarSize
	}
	return len(paths), n
}

func TestReceiveRefusesBadStreams(t *testing.T) {
	good := makePath(t, "good", map[string]string{"a": "alpha", "sub/b": "beta"})
	other := makePath(t, "other", map[string]string{"x": strings.Repeat("x", 1000)})

	corrupt := good
	corrupt.nar = bytes.Clone(good.nar)
	i := bytes.Index(corrupt.nar, []byte("alpha"))
	corrupt.nar[i] = 'A' // same size, different content, header hash unchanged

	wrongHash := good
	wrongHash.info.NarHash = other.info.NarHash

	short := good
	short.info.NarSize -= 8
	long := good
	long.info.NarSize += 8
	long.nar = append(bytes.Clone(good.nar), make([]byte, 8)...)

	traversal := good
	traversal.info.Path = "/nix/store/../../etc/cron.d"

	withTrailer := func(paths ...testPath) []byte { n, b := sum(paths); return rawStream(paths, n, b) }
	badMagic := bytes.Replace(withTrailer(good), []byte(streamMagic), []byte("nixos-via-closurX"), 1)
	badVersion := withTrailer(good)
	badVersion[8+len(streamMagic)] = 9

	tests := []struct {
		name    string
		raw     []byte
		want    string
		present []testPath // committed despite the error
		absent  []testPath
	}{
		{"corrupt NAR", withTrailer(corrupt), "NAR hash mismatch", nil, []testPath{good}},
		{"wrong narHash", withTrailer(wrongHash), "NAR hash mismatch", nil, []testPath{good}},
		{"narSize too small", withTrailer(short), "longer than the header's narSize", nil, []testPath{good}},
		{"narSize too large", withTrailer(long), "header says", nil, []testPath{good}},
		{"path traversal", withTrailer(traversal), `store path "../../etc/cron.d"`, nil, nil},
		{"bad magic", badMagic, "magic", nil, []testPath{good}},
		{"bad version", badVersion, "version 9", nil, []testPath{good}},
		{"trailer count", rawStream([]testPath{good}, 2, good.info.NarSize), "trailer says 2 paths", []testPath{good}, nil},
		{"data after trailer", append(withTrailer(good), 0), "data after the trailer", []testPath{good}, nil},
		{"no trailer", withTrailer(good)[:len(withTrailer(good))-24], "ends inside item kind", []testPath{good}, nil},
		{"second path corrupt", withTrailer(other, corrupt), "NAR hash mismatch", []testPath{other}, []testPath{good}},
		{"cut inside the second NAR", withTrailer(other, good)[:len(withTrailer(other, good))-60], "truncated", []testPath{other}, []testPath{good}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			stats, err := Receive(context.Background(), bytes.NewReader(compress(t, tt.raw)), root, ReceiveOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Receive error = %v, want it to mention %q", err, tt.want)
			}
			if stats.Paths != len(tt.present) {
				t.Errorf("committed %d paths, want %d", stats.Paths, len(tt.present))
			}
			for _, p := range tt.present {
				if res, err := nar.HashPath(filepath.Join(root, p.info.Path)); err != nil || res.Hash != p.info.NarHash {
					t.Errorf("%s: want it committed intact, got %v %v", p.info.Path, res.Hash, err)
				}
			}
			for _, p := range tt.absent {
				if _, err := os.Lstat(filepath.Join(root, p.info.Path)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s exists after a refused stream (Lstat: %v)", p.info.Path, err)
				}
				if _, ok := records(t, root)[p.info.Path]; ok {
					t.Errorf("%s has a record after a refused stream", p.info.Path)
				}
			}
			checkNoPartial(t, root, false)
		})
	}
}

func TestReceiveRefusesNonZstd(t *testing.T) {
	root := t.TempDir()
	_, err := Receive(context.Background(), strings.NewReader("GET / HTTP/1.0\r\n\r\n"), root, ReceiveOptions{})
	if err == nil {
		t.Fatal("Receive of garbage succeeded")
	}
	if _, err := Receive(context.Background(), strings.NewReader(""), "relative/root", ReceiveOptions{}); err == nil ||
		!strings.Contains(err.Error(), "absolute") {
		t.Errorf("Receive into a relative root: error = %v, want absolute", err)
	}
}

// TestReceiveReplacesUnrecordedCopy: a path present without a record (an
// agent killed between rename and record) is replaced, not trusted.
func TestReceiveReplacesUnrecordedCopy(t *testing.T) {
	good := makePath(t, "good", map[string]string{"a": "alpha"})
	root := t.TempDir()
	stale := filepath.Join(root, good.info.Path)
	os.MkdirAll(filepath.Join(stale, "junk"), 0o555)
	var q bytes.Buffer
	writeQuery(&q, []nix.PathInfo{good.info})
	var ans bytes.Buffer
	if err := AnswerQuery(context.Background(), &q, &ans, root); err != nil {
		t.Fatal(err)
	}
	if valid, err := readValid(bufio.NewReader(&ans)); err != nil || len(valid) != 0 {
		t.Fatalf("query says %v (%v), want an unrecorded copy to be invalid", valid, err)
	}
	n, b := sum([]testPath{good})
	if _, err := Receive(context.Background(), bytes.NewReader(compress(t, rawStream([]testPath{good}, n, b))), root, ReceiveOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err := nar.HashPath(stale); err != nil || res.Hash != good.info.NarHash {
		t.Errorf("after receive, %s hashes %s (%v), want %s", stale, res.Hash, err, good.info.NarHash)
	}
}

func TestQueryWantsMatchingHash(t *testing.T) {
	good := makePath(t, "good", map[string]string{"a": "alpha"})
	other := makePath(t, "other", map[string]string{"b": "beta"})
	root := t.TempDir()
	n, b := sum([]testPath{good, other})
	if _, err := Receive(context.Background(), bytes.NewReader(compress(t, rawStream([]testPath{good, other}, n, b))), root, ReceiveOptions{}); err != nil {
		t.Fatal(err)
	}
	changed := other.info
	changed.NarHash = good.info.NarHash
	absent := nix.PathInfo{Path: fakePath("absent"), NarHash: good.info.NarHash, NarSize: 1}
	var q, ans bytes.Buffer
	writeQuery(&q, []nix.PathInfo{good.info, changed, absent})
	if err := AnswerQuery(context.Background(), &q, &ans, root); err != nil {
		t.Fatal(err)
	}
	valid, err := readValid(bufio.NewReader(&ans))
	if err != nil {
		t.Fatal(err)
	}
	if len(valid) != 1 || !valid[good.info.Path] {
		t.Errorf("valid = %v, want only %s (other has a different hash, absent is absent)", valid, good.info.Path)
	}
	for _, bad := range []string{"", "nixos-via-query 2\nend\n", queryMagic + "\n/etc/passwd sha256-x\nend\n", queryMagic + "\n"} {
		if err := AnswerQuery(context.Background(), strings.NewReader(bad), &bytes.Buffer{}, root); err == nil {
			t.Errorf("AnswerQuery(%q) succeeded, want an error", bad)
		}
	}
}

// TestServeReceiveAnswersQueryFirst: `agent receive` given a query ahead of
// its stream answers it on stdout before the "ok" line, reads the stream that
// follows in full, and works as before without one.
func TestServeReceiveAnswersQueryFirst(t *testing.T) {
	good := makePath(t, "good", map[string]string{"a": "alpha"})
	other := makePath(t, "other", map[string]string{"b": "beta"})
	root := t.TempDir()
	n, b := sum([]testPath{good})
	var out bytes.Buffer
	if err := ServeReceive(context.Background(), bytes.NewReader(compress(t, rawStream([]testPath{good}, n, b))), &out, root); err != nil {
		t.Fatalf("ServeReceive without a query: %v", err)
	}
	if got, want := out.String(), fmt.Sprintf("ok 1 %d\n", b); got != want {
		t.Errorf("answer without a query = %q, want %q", got, want)
	}

	var in bytes.Buffer
	writeQuery(&in, []nix.PathInfo{good.info, other.info})
	n, b = sum([]testPath{other})
	in.Write(compress(t, rawStream([]testPath{other}, n, b)))
	out.Reset()
	if err := ServeReceive(context.Background(), &in, &out, root); err != nil {
		t.Fatalf("ServeReceive with a query: %v", err)
	}
	br := bufio.NewReader(&out)
	valid, err := readValid(br)
	if err != nil {
		t.Fatalf("answer %q: %v", out.String(), err)
	}
	if len(valid) != 1 || !valid[good.info.Path] {
		t.Errorf("query answered %v, want only %s", valid, good.info.Path)
	}
	rest, _ := io.ReadAll(br)
	if got, want := string(rest), fmt.Sprintf("ok 1 %d\n", b); got != want {
		t.Errorf("after the answer: %q, want %q", got, want)
	}
	for _, p := range []testPath{good, other} {
		if res, err := nar.HashPath(filepath.Join(root, p.info.Path)); err != nil || res.Hash != p.info.NarHash {
			t.Errorf("%s on the target hashes %s (%v), want %s", p.info.Path, res.Hash, err, p.info.NarHash)
		}
	}

	// A query that does not end is refused, and nothing is made under the
	// root.
	in.Reset()
	in.WriteString(queryMagic + "\n" + other.info.Path + " " + other.info.NarHash.String() + "\n")
	fresh := t.TempDir()
	if err := ServeReceive(context.Background(), &in, &bytes.Buffer{}, fresh); err == nil || !strings.Contains(err.Error(), "without \"end\"") {
		t.Errorf("ServeReceive of a cut query: error = %v, want it to say the query did not end", err)
	}
	if entries, err := os.ReadDir(fresh); err != nil || len(entries) != 0 {
		t.Errorf("after a cut query the root holds %v (%v), want nothing", entries, err)
	}
}

func FuzzReceive(f *testing.F) {
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("content"), 0o644)
	os.Symlink("f", filepath.Join(dir, "l"))
	var buf bytes.Buffer
	res, _ := nar.Dump(&buf, dir)
	p := testPath{info: nix.PathInfo{Path: fakePath("fuzz"), NarHash: res.Hash, NarSize: res.Size, References: []string{fakePath("fuzz")}}, nar: buf.Bytes()}
	f.Add(rawStream([]testPath{p}, 1, p.info.NarSize))
	f.Add(rawStream(nil, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		l, _ := newLayout(root)
		if err := l.mkdirs(); err != nil {
			t.Fatal(err)
		}
		stats, _ := receiveDecoded(context.Background(), bytes.NewReader(data), l, ReceiveOptions{BatchBytes: 1 << 20, BatchPaths: 16, BatchAge: 1 << 40})
		if got := checkNoPartial(t, root, false); got != stats.Paths {
			t.Errorf("store holds %d complete paths, receiver committed %d", got, stats.Paths)
		}
	})
}

func TestRecordsFile(t *testing.T) {
	a := makePath(t, "a", map[string]string{"x": "1"}).info
	b := makePath(t, "b", map[string]string{"y": "2"}).info
	data, err := encodeRecords([]nix.PathInfo{a, b})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecords(data)
	if err != nil || len(got) != 2 || got[0].Path != a.Path || got[1].NarHash != b.NarHash {
		t.Fatalf("decodeRecords(encodeRecords) = %+v, %v", got, err)
	}
	// Every strict prefix is a torn write and must be refused as a whole.
	for n := 0; n < len(data); n++ {
		if infos, err := decodeRecords(data[:n]); err == nil {
			t.Fatalf("decodeRecords accepted a torn file of %d/%d bytes: %+v", n, len(data), infos)
		}
	}
	// A later batch overrides an earlier one.
	root := t.TempDir()
	l, _ := newLayout(root)
	l.mkdirs()
	changed := a
	changed.NarHash = b.NarHash
	for i, batch := range [][]nix.PathInfo{{a, b}, {changed}} {
		data, _ := encodeRecords(batch)
		os.WriteFile(filepath.Join(l.validDir(), fmt.Sprintf("%020d-x%s", i, recordsSuffix)), data, 0o644)
	}
	os.WriteFile(filepath.Join(l.validDir(), fmt.Sprintf("%020d-x%s", 9, recordsSuffix)), data[:len(data)-3], 0o644)
	recs := records(t, root)
	if recs[a.Path].NarHash != b.NarHash || recs[b.Path].NarHash != b.NarHash || len(recs) != 2 {
		t.Errorf("records = %+v, want the later batch to win and the torn file ignored", recs)
	}
}
