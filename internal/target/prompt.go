package target

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// TerminalPrompt is an Options.Prompt that asks on the terminal in: the
// question goes to out, an echoed answer is read as one word, a secret
// without echo.
func TerminalPrompt(in *os.File, out io.Writer) func(question string, echo bool) (string, error) {
	return func(q string, echo bool) (string, error) {
		fmt.Fprint(out, q)
		if echo {
			var s string
			_, err := fmt.Fscanln(in, &s)
			return s, err
		}
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(out)
		return string(b), err
	}
}
