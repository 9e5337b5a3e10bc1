package closure

import (
	"bufio"
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nar"
	"github.com/nixos-via/nixos-via/internal/nix"
)

const testStorePath = "/nix/store/k5gmviv9m1h0wdqisa0m6wi3cdy94cna-probe.txt"

func testInfo(t testing.TB) nix.PathInfo {
	t.Helper()
	h, err := nar.ParseHash("sha256:0pmbrp9xz7q2xs82qa0xlcfm4c59lpc4cw6yxjv1rl854n38rxiw")
	if err != nil {
		t.Fatal(err)
	}
	return nix.PathInfo{Path: testStorePath, NarHash: h, NarSize: 136, References: []string{}}
}

const testNarinfo = `StorePath: /nix/store/k5gmviv9m1h0wdqisa0m6wi3cdy94cna-probe.txt
URL: nar/12vsx35xgq9l6aa519cwmslsaii94gqybdp4rd4p4h4qpj26nccp.nar.xz
Compression: xz
FileHash: sha256:12vsx35xgq9l6aa519cwmslsaii94gqybdp4rd4p4h4qpj26nccp
FileSize: 144
NarHash: sha256:0pmbrp9xz7q2xs82qa0xlcfm4c59lpc4cw6yxjv1rl854n38rxiw
NarSize: 136
References: 
CA: fixed:sha256:1jrgj9n9bizblkyvwdq8s9z8h1qqa023c96032aawhl6m0y3a2ys
`

func TestParseNarinfo(t *testing.T) {
	edit := func(old, new string) string { return strings.Replace(testNarinfo, old, new, 1) }
	tests := []struct {
		name, text string
		wantErr    string // "" for success
	}{
		{"as nix writes it", testNarinfo, ""},
		{"SRI NarHash", edit("sha256:0pmbrp9xz7q2xs82qa0xlcfm4c59lpc4cw6yxjv1rl854n38rxiw", testInfo(t).NarHash.SRI()), ""},
		{"no compression means bzip2", edit("Compression: xz\n", ""), ""},
		{"other store path", edit("k5gmviv9m1h0wdqisa0m6wi3cdy94cna-probe.txt", "k5gmviv9m1h0wdqisa0m6wi3cdy94cnb-probe.txt"), "narinfo is for"},
		{"other NarHash", edit("0pmbrp9xz7q2xs82qa0xlcfm4c59lpc4cw6yxjv1rl854n38rxiw", "0pmbrp9xz7q2xs82qa0xlcfm4c59lpc4cw6yxjv1rl854n38rxi0"), "NarHash"},
		{"other NarSize", edit("NarSize: 136", "NarSize: 137"), "NarSize 137"},
		{"NarSize not a number", edit("NarSize: 136", "NarSize: -1"), "NarSize"},
		{"no URL", edit("URL: nar/12vsx35xgq9l6aa519cwmslsaii94gqybdp4rd4p4h4qpj26nccp.nar.xz\n", ""), "no URL"},
		{"URL twice", testNarinfo + "URL: nar/x.nar\n", "URL twice"},
		{"absolute URL", edit("URL: nar/", "URL: https://evil.example/nar/"), "narinfo URL"},
		{"rooted URL", edit("URL: nar/", "URL: /nar/"), "absolute path"},
		{"URL with ..", edit("URL: nar/", "URL: nar/../../etc/"), "segment"},
		{"URL with query", edit(".nar.xz\n", ".nar.xz?x=1\n"), "character '?'"},
		{"unknown compression", edit("Compression: xz", "Compression: br"), "Compression \"br\""},
		{"line without colon", testNarinfo + "garbage\n", "want \"Key: value\""},
		{"too big", testNarinfo + strings.Repeat("Sig: x\n", 10000), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ni, err := parseNarinfo([]byte(tt.text), testInfo(t))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseNarinfo: %v", err)
				}
				if ni.NarHash != testInfo(t).NarHash || ni.NarSize != 136 || ni.StorePath != testStorePath {
					t.Errorf("got %+v", ni)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseNarinfo: got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNarURL(t *testing.T) {
	tests := []struct {
		cache, rel, want string
	}{
		{"https://cache.nixos.org", "nar/a.nar.xz", "https://cache.nixos.org/nar/a.nar.xz"},
		{"https://cache.nixos.org/", "nar/a.nar.xz", "https://cache.nixos.org/nar/a.nar.xz"},
		{"https://cache.nixos.org?priority=40", "nar/a.nar.xz", "https://cache.nixos.org/nar/a.nar.xz"},
		{"http://127.0.0.1:8080/sub/dir/", "nar/a.nar", "http://127.0.0.1:8080/sub/dir/nar/a.nar"},
		{"https://cache.nixos.org", "nar//a.nar", ""},
		{"https://cache.nixos.org", "./nar/a.nar", ""},
		{"https://cache.nixos.org", "//evil.example/a.nar", ""},
		{"https://cache.nixos.org", "nar/a%2e%2e", ""},
		{"https://cache.nixos.org", `nar\..\a`, ""},
		{"file:///tmp/cache", "nar/a.nar", ""},
		{"https://user@cache.example", "nar/a.nar", ""},
	}
	for _, tt := range tests {
		got, err := narURL(tt.cache, tt.rel)
		if tt.want == "" {
			if err == nil {
				t.Errorf("narURL(%q, %q) = %q, want an error", tt.cache, tt.rel, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("narURL(%q, %q) = %q, %v; want %q", tt.cache, tt.rel, got, err, tt.want)
		}
	}
}

func TestHTTPCaches(t *testing.T) {
	usable, others := HTTPCaches([]string{"https://cache.nixos.org/", "", "file:///srv/cache", "http://127.0.0.1:1?priority=10", "daemon", "s3://bucket"})
	if want := []string{"https://cache.nixos.org/", "http://127.0.0.1:1?priority=10"}; !reflect.DeepEqual(usable, want) {
		t.Errorf("usable %q, want %q", usable, want)
	}
	if want := []string{"file:///srv/cache", "daemon", "s3://bucket"}; !reflect.DeepEqual(others, want) {
		t.Errorf("others %q, want %q", others, want)
	}
}

func TestSubstituteRequestRoundTrip(t *testing.T) {
	a, b := testInfo(t), testInfo(t)
	b.Path = "/nix/store/k5gmviv9m1h0wdqisa0m6wi3cdy94cnb-other"
	b.References = []string{a.Path, b.Path}
	b.Deriver = "/nix/store/k5gmviv9m1h0wdqisa0m6wi3cdy94cnc-other.drv"
	want := substituteRequest{Caches: []string{"https://a.example", "http://127.0.0.1:9/x?priority=1"}, Lookups: 4, Jobs: 2,
		ConnectTimeout: time.Second, StallTimeout: 3 * time.Second, Paths: []nix.PathInfo{a, b}}
	var buf bytes.Buffer
	if err := want.write(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := readSubstituteRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	for name, text := range map[string]string{
		"no cache":       substituteMagic + "\nend\n",
		"file cache":     substituteMagic + "\ncache file:///x\nend\n",
		"bad path":       substituteMagic + "\ncache http://a\npath /etc/passwd sha256:0pmbrp9xz7q2xs82qa0xlcfm4c59lpc4cw6yxjv1rl854n38rxiw 1 -\nend\n",
		"zero narSize":   substituteMagic + "\ncache http://a\npath " + testStorePath + " sha256:0pmbrp9xz7q2xs82qa0xlcfm4c59lpc4cw6yxjv1rl854n38rxiw 0 -\nend\n",
		"unknown":        substituteMagic + "\ncache http://a\nfrobnicate\nend\n",
		"no end":         substituteMagic + "\ncache http://a\n",
		"wrong magic":    "nixos-via-query 1\nend\n",
		"unknown option": substituteMagic + "\ncache http://a\noption colour red\nend\n",
	} {
		if _, err := readSubstituteRequest(bufio.NewReader(strings.NewReader(text))); err == nil {
			t.Errorf("%s: readSubstituteRequest accepted %q", name, text)
		}
	}
}

func TestReadSubstituteAnswers(t *testing.T) {
	tests := []struct {
		name, text string
		got, miss  int
		ok         bool
	}{
		{"complete", substitutedMagic + "\ngot " + testStorePath + "\nmiss /nix/store/k5gmviv9m1h0wdqisa0m6wi3cdy94cnb-x GET x: 404 Not Found\nend 1 1\n", 1, 1, true},
		{"counts differ", substitutedMagic + "\ngot " + testStorePath + "\nend 2 0\n", 1, 0, false},
		{"cut", substitutedMagic + "\ngot " + testStorePath + "\n", 1, 0, false},
		{"bad path", substitutedMagic + "\ngot /etc/passwd\nend 1 0\n", 0, 0, false},
	}
	for _, tt := range tests {
		var lines []substituteAnswer
		got, miss, err := readSubstituteAnswers(bufio.NewReader(strings.NewReader(tt.text)), func(a substituteAnswer) { lines = append(lines, a) })
		if (err == nil) != tt.ok || got != tt.got || miss != tt.miss || len(lines) != tt.got+tt.miss {
			t.Errorf("%s: got %d, miss %d, %d lines, err %v; want %d, %d, ok %v", tt.name, got, miss, len(lines), err, tt.got, tt.miss, tt.ok)
		}
	}
}

// FuzzParseNarinfo: no input panics the parser, and whatever it accepts is
// for the wanted path, with our hash and size and a URL inside the cache.
func FuzzParseNarinfo(f *testing.F) {
	f.Add([]byte(testNarinfo))
	f.Add([]byte(strings.Replace(testNarinfo, "URL: nar/", "URL: ../", 1)))
	f.Add([]byte("StorePath: x\nURL:\nNarHash: sha256:\nNarSize: 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		want := testInfo(t)
		ni, err := parseNarinfo(data, want)
		if err != nil {
			return
		}
		if ni.StorePath != want.Path || ni.NarHash != want.NarHash || ni.NarSize != want.NarSize || !decompressors[ni.Compression] {
			t.Fatalf("accepted %+v for %+v", ni, want)
		}
		u, err := narURL("https://cache.example/sub", ni.URL)
		if err != nil || !strings.HasPrefix(u, "https://cache.example/sub/") || strings.Contains(u[len("https://"):], "//") || strings.Contains(u, "/../") {
			t.Fatalf("accepted URL %q resolves to %q, %v", ni.URL, u, err)
		}
	})
}

// FuzzReadSubstituteRequest: no input panics the agent's request parser,
// and every path it accepts is a valid path-info.
func FuzzReadSubstituteRequest(f *testing.F) {
	var buf bytes.Buffer
	info := testInfo(f)
	substituteRequest{Caches: []string{"http://127.0.0.1:1"}, Paths: []nix.PathInfo{info}}.write(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte(substituteMagic + "\ncache http://a\nref x\nend\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readSubstituteRequest(bufio.NewReaderSize(bytes.NewReader(data), 4096))
		if err != nil {
			return
		}
		for _, p := range req.Paths {
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted %+v: %v", p, err)
			}
		}
	})
}
