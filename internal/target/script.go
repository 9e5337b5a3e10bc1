package target

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
)

// scriptTail is how many of a script's last lines its error carries.
const scriptTail = 40

// RunScript runs a shell script as root on the target with args, handing
// each line it prints (stdout and stderr) to line as it comes. The script is
// stored in a temporary file first and run with no input, so a command in it
// that reads stdin cannot eat the rest of the script. On failure the error
// (named name, wrapping *ExitError) carries the last lines it printed.
func (c *Conn) RunScript(ctx context.Context, name, script string, args []string, line func(string)) error {
	pr, pw := io.Pipe()
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			tail = append(tail, sc.Text())
			if len(tail) > scriptTail {
				tail = tail[len(tail)-scriptTail:]
			}
			line(sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = ShellQuote(a)
	}
	cmd := `t=$(mktemp /tmp/nixos-via-script.XXXXXX) && cat > "$t" && sh "$t" ` + strings.Join(quoted, " ") + ` < /dev/null; st=$?; rm -f "$t"; exit $st`
	err := c.Run(ctx, cmd, strings.NewReader(script), pw, pw)
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("%s: %w\n--- last lines ---\n%s", name, err, strings.Join(tail, "\n"))
	}
	return nil
}
