package closure

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixos-via/nixos-via/internal/nix"
)

// binaryCache writes a binary cache of the closures of paths with this
// machine's Nix (`nix copy --to file://DIR?compression=C`, never asking a
// substituter) and returns DIR.
func binaryCache(t *testing.T, compression string, paths ...string) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"--extra-experimental-features", "nix-command", "--option", "substituters", "",
		"copy", "--to", "file://" + dir + "?compression=" + compression}, paths...)
	if out, err := exec.CommandContext(ctx, "nix", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix copy --to file://%s?compression=%s: %v\n%s", dir, compression, err, out)
	}
	return dir
}

// fault is how the test cache answers for one path.
type fault string

const (
	faultNone      fault = ""
	faultNotFound  fault = "404"           // narinfo 404
	faultTruncated fault = "truncated"     // NAR cut in the middle
	faultCorrupt   fault = "corrupt"       // NAR of the right length with one byte flipped
	faultTrailing  fault = "trailing"      // NAR followed by more bytes
	faultOtherHost fault = "other-host"    // narinfo URL absolute, to a private address
	faultDotDot    fault = "dotdot"        // narinfo URL climbing out of the cache
	faultWrongHash fault = "wrong-narhash" // narinfo NarHash not ours
	faultWrongPath fault = "wrong-path"    // narinfo StorePath of another path
	faultStall     fault = "stall"         // NAR headers, then nothing
	faultTrickle   fault = "trickle"       // the NAR, a few bytes at a time
	faultSlowInfo  fault = "slow-narinfo"  // the narinfo, a few bytes at a time
	faultServer    fault = "500"           // NAR request answered 500
	faultBigInfo   fault = "big-narinfo"   // narinfo of more than 64 KiB
	faultHugeDict  fault = "huge-dict"     // xz NAR whose block asks for a 4 GiB dictionary
)

// cacheServer serves a binary cache directory on 127.0.0.1, answering for
// chosen paths with a fault, optionally slowly, and counting requests.
type cacheServer struct {
	*httptest.Server
	dir      string
	delay    time.Duration // before every answer
	mu       sync.Mutex
	faults   map[string]fault // by hash part
	narinfos atomic.Int64     // narinfo requests
	nars     atomic.Int64     // NAR requests
	stalled  chan struct{}    // closed at the end, releasing stalled answers
	// beforeNar, when set, runs before a NAR is served, with the hash part
	// of its path.
	beforeNar func(hash string)
	// cacheInfo, when set, is served as nix-cache-info instead of the
	// directory's.
	cacheInfo string
}

func startCache(t *testing.T, dir string) *cacheServer {
	t.Helper()
	c := &cacheServer{dir: dir, faults: map[string]fault{}, stalled: make(chan struct{})}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(func() { close(c.stalled); c.Close() })
	return c
}

// startTLSCache is startCache over https, with its certificate (PEM) in
// the returned file.
func startTLSCache(t *testing.T, dir string) (*cacheServer, string) {
	t.Helper()
	c := &cacheServer{dir: dir, faults: map[string]fault{}, stalled: make(chan struct{})}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	c.Config.ErrorLog = log.New(io.Discard, "", 0) // an untrusting agent's handshakes fail, as they should
	c.StartTLS()
	t.Cleanup(func() { close(c.stalled); c.Close() })
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate().Raw})
	if err := os.WriteFile(ca, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	return c, ca
}

// fail makes the cache answer for storePath with f.
func (c *cacheServer) fail(storePath string, f fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults[hashPart(storePath)] = f
}

func hashPart(storePath string) string {
	return strings.TrimPrefix(storePath, nix.StoreDir+"/")[:32]
}

func (c *cacheServer) faultFor(hash string) fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.faults[hash]
}

func (c *cacheServer) serve(w http.ResponseWriter, r *http.Request) {
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "nix-cache-info" {
		if c.cacheInfo != "" {
			io.WriteString(w, c.cacheInfo)
			return
		}
		http.ServeFile(w, r, filepath.Join(c.dir, name))
		return
	}
	if hash, ok := strings.CutSuffix(name, ".narinfo"); ok && !strings.Contains(hash, "/") {
		c.narinfos.Add(1)
		c.serveNarinfo(w, r, hash)
		return
	}
	if strings.HasPrefix(name, "nar/") && !strings.Contains(name, "..") {
		c.nars.Add(1)
		c.serveNar(w, r, name)
		return
	}
	http.NotFound(w, r)
}

func (c *cacheServer) serveNarinfo(w http.ResponseWriter, r *http.Request, hash string) {
	data, err := os.ReadFile(filepath.Join(c.dir, hash+".narinfo"))
	f := c.faultFor(hash)
	if err != nil || f == faultNotFound {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	text := string(data)
	field := func(k string) string {
		for _, l := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(l, k+": "); ok {
				return v
			}
		}
		return ""
	}
	// The URL of the NAR carries the path's hash part, so serveNar knows
	// which path's fault applies.
	url := field("URL")
	text = strings.Replace(text, "URL: "+url, "URL: "+url+"-"+hash, 1)
	switch f {
	case faultOtherHost:
		text = strings.Replace(text, "URL: ", "URL: http://10.0.2.2/", 1)
	case faultDotDot:
		text = strings.Replace(text, "URL: ", "URL: nar/../../", 1)
	case faultWrongHash:
		h := field("NarHash")
		text = strings.Replace(text, h, h[:len(h)-1]+map[bool]string{true: "1", false: "0"}[h[len(h)-1] == '0'], 1)
	case faultWrongPath:
		p := field("StorePath")
		text = strings.Replace(text, p, nix.StoreDir+"/"+strings.Repeat("0", 32)+"-other", 1)
	case faultBigInfo:
		text += strings.Repeat("Sig: x\n", 70<<10/7)
	case faultSlowInfo:
		c.trickle(w, r, []byte(text))
		return
	}
	w.Write([]byte(text))
}

// trickle sends data 2 bytes every 20 ms (100 bytes a second) until it
// is sent, the client has gone, or the test ends.
func (c *cacheServer) trickle(w http.ResponseWriter, r *http.Request, data []byte) {
	w.WriteHeader(http.StatusOK)
	for len(data) > 0 {
		n := min(2, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		data = data[n:]
		select {
		case <-c.stalled:
			return
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *cacheServer) serveNar(w http.ResponseWriter, r *http.Request, name string) {
	i := strings.LastIndex(name, "-")
	if i < 0 {
		http.NotFound(w, r)
		return
	}
	file, hash := name[:i], name[i+1:]
	if c.beforeNar != nil {
		c.beforeNar(hash)
	}
	data, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch c.faultFor(hash) {
	case faultTruncated:
		data = data[:len(data)/2]
	case faultCorrupt:
		data = bytes.Clone(data)
		data[len(data)-100] ^= 0x55 // inside the last file's contents, for a NAR without compression
	case faultTrailing:
		data = append(bytes.Clone(data), data...)
	case faultHugeDict:
		data = setXZDict(data, 40)
	case faultServer:
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case faultTrickle:
		c.trickle(w, r, data)
		return
	case faultStall:
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-c.stalled:
		case <-r.Context().Done():
		}
		return
	}
	w.Write(data)
}
