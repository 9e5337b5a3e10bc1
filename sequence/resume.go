package sequence

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nixos-via/nixos-via/internal/target"
)

// Hint is what to tell the user of a stopped install: the host's state
// and either the command that goes on from here (the same arguments,
// reaching the installer as it answers now, see ResumeCommand) or the
// advice. args are the command line's arguments after "nixos-via", host
// the destination as given in them.
func (s *Stopped) Hint(args []string, host string) string {
	hint := "The host now: " + s.State.String() + ".\n"
	if len(s.Left) > 0 {
		quoted := make([]string, len(s.Left))
		for i, d := range s.Left {
			quoted[i] = target.ShellQuote(d)
		}
		hint += "Left on the host: " + strings.Join(s.Left, ", ") + " (to remove instead: rm -rf " + strings.Join(quoted, " ") + ").\n"
	}
	switch {
	case s.Rerun:
		hint += "To go on from here once the cause is fixed, run: " + ResumeCommand(args, host, s.Login, s.Port) + "\n"
	case s.Advice != "":
		hint += "Next: " + s.Advice + ".\n"
	}
	return hint
}

// ResumeCommand is args as a shell command line of nixos-via, with the
// login of host replaced by login and a -p port added, where they are
// set (a port inside the destination is then dropped, since it would win
// over -p).
func ResumeCommand(args []string, host, login string, port int) string {
	newHost := host
	if login != "" {
		if _, h, p, err := target.SplitDestination(host); err == nil {
			newHost = login + "@" + h
			if p != 0 && port == 0 {
				newHost += ":" + strconv.Itoa(p)
			}
		}
	}
	if port != 0 {
		if u, h, p, err := target.SplitDestination(newHost); err == nil && p != 0 {
			newHost = h
			if u != "" {
				newHost = u + "@" + h
			}
		}
	}
	words := []string{"nixos-via"}
	for _, a := range args {
		switch {
		case a == host:
			a = newHost
		case a == "--target-host="+host:
			a = "--target-host=" + newHost
		}
		words = append(words, target.ShellQuote(a))
	}
	if port != 0 {
		words = append(words, "-p", fmt.Sprint(port))
	}
	return strings.Join(words, " ")
}
