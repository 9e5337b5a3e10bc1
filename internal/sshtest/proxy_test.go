package sshtest

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestProxyRate: a rate-limited proxy carries 1 MiB at 4 MiB/s in no less
// than a quarter second (a slow machine only makes it slower), and all of it.
func TestProxyRate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	p := StartProxy(t, ln.Addr().String())
	p.SetRate(4 << 20)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := <-got; n != 1<<20 {
		t.Fatalf("the server got %d bytes, want %d", n, 1<<20)
	}
	if took := time.Since(start); took < 250*time.Millisecond-linkBurst {
		t.Errorf("1 MiB at 4 MiB/s took %s, want at least 250ms less a burst of %s", took, linkBurst)
	}
}
