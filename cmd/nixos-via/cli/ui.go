package cli

import "github.com/nixos-via/nixos-via/internal/render"

// newUI renders events as --json and stderr being a terminal ask.
func newUI(env Env, asJSON bool) *render.UI {
	_, tty := terminal(env.Stderr)
	return render.New(env.Stdout, env.Stderr, asJSON, tty)
}
