package closure

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"
)

// FuzzAnswerQuery feeds the agent's query reader what a sender (or
// anything on the other end of the SSH channel) might send: it must
// answer in the protocol, listing only paths the query named, or fail.
func FuzzAnswerQuery(f *testing.F) {
	const p = "/nix/store/0c4j6yyb7ppmb8qbh3nbyyi7xvdd0s29-hello-2.12"
	f.Add([]byte(queryMagic + "\n" + p + " sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\nend\n"))
	f.Add([]byte(queryMagic + "\n" + p + " sha256-AAAA\nend\n"))
	f.Add([]byte(queryMagic + "\n/nix/store/../etc/passwd sha256:00\nend\n"))
	f.Add([]byte(queryMagic + "\nend\ntrailing"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		if err := AnswerQuery(context.Background(), bytes.NewReader(in), &out, t.TempDir()); err != nil {
			return
		}
		valid, err := readValid(bufio.NewReader(&out))
		if err != nil {
			t.Fatalf("the answer to %q does not parse: %v\n%s", in, err, out.String())
		}
		for path := range valid {
			if !bytes.Contains(in, []byte(path+" ")) {
				t.Errorf("the answer lists %q, which the query did not name", path)
			}
		}
	})
}

// FuzzReadValid feeds the sender's reader of the agent's answer what a
// hostile host might answer: it must end with an error or a set of store
// paths, never more than the answer held.
func FuzzReadValid(f *testing.F) {
	f.Add([]byte(validMagic + "\n/nix/store/0c4j6yyb7ppmb8qbh3nbyyi7xvdd0s29-hello-2.12\nend 1\n"))
	f.Add([]byte(validMagic + "\nend 5\n"))
	f.Add([]byte(validMagic + "\n" + strings.Repeat("x", 70000) + "\nend 1\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		valid, err := readValid(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			return
		}
		for path := range valid {
			if !bytes.Contains(in, []byte(path+"\n")) {
				t.Errorf("readValid returned %q, which the answer did not hold", path)
			}
		}
	})
}
