package diskorun

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/nixos-via/nixos-via/internal/phase"
)

// Confirm asks the person at t before the wipe: a line "yes" goes on,
// anything else (or the input's end) is a refusal; nothing was touched
// then. It is what a Plan's Confirm is when a terminal is there and
// --yes was not given.
func (t *Terminal) Confirm() error {
	fmt.Fprint(t.Out, "Type \"yes\" to erase them: ")
	line, _ := bufio.NewReader(t.In).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return &phase.Refusal{Check: "confirm", Msg: "not confirmed; nothing was touched"}
	}
	return nil
}
