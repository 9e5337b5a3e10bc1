// Package deploy is the deploy phase: one running NixOS host switched to a
// new system with magic rollback. Run(ctx, conn, sink, opts) is one host;
// it keeps no state outside its arguments, so a fleet runner can call it
// for many hosts at once, each with its own connection and sink.
//
// # Steps
//
//  1. Status (status.sh): the host's nix-store, init, running system and
//     its closure, and the last deploy. A last deploy that ended while no
//     nixos-via saw it (a cut connection) is reported first; one still
//     waiting for the confirmation of this same system is confirmed (the
//     re-run is the fresh connection); any other running one refuses.
//  2. Lock (hold.sh, a session held open): the deploy lock
//     /var/lib/nixos-via/deploy/lock (mkdir; a dead holder's is taken
//     over) and, with flock(1), a shared lock on Nix's
//     /nix/var/nix/gc.lock, the lock every Nix garbage collection takes
//     exclusively for its whole run: while deploy holds it no collection
//     starts, and one already running finishes first.
//  3. Plan (prepare.sh): the paths the host's Nix does not have
//     (nix-store --check-validity), and what changes, by package name
//     and version (Diff); printed before anything is sent.
//  4. Copy: the missing paths streamed into /nix/store by the agent
//     (closure.Send to `nixos-via agent receive --root /`): each path is
//     restored under a temporary name, checked against its narHash, and
//     renamed into place only when complete.
//  5. Register (register.sh): the paths loaded into the host's Nix
//     database (nix-store --load-db, the running system's Nix, so the
//     database keeps the schema the old generation reads), and the new
//     system rooted (/nix/var/nix/gcroots/nixos-via-deploy), both before
//     the GC lock is let go. So a collection never sees a received path
//     unregistered or unrooted, and other Nix operations only ever see
//     whole, registered paths (the registration is one SQLite
//     transaction, as Nix's own).
//  6. Switch (launch.sh, supervisor.sh): a supervisor started detached (a
//     transient systemd unit with systemd-run when PID 1 is systemd,
//     otherwise setsid with its output in the deploy's log) takes the
//     deploy lock over, sets the profile (switch, boot: a new generation
//     system-N-link, as nix-env --set) and runs switch-to-configuration
//     ACTION.
//  7. Confirm: with magic rollback (switch and test), nixos-via opens a
//     brand-new SSH connection (new TCP, handshake and authentication:
//     target.ReachHost, never the old connection) and runs the --check
//     commands, then confirms. No confirmation within the confirm
//     timeout, a failing check or a failing switch: the supervisor
//     itself puts the previous profile back, removes the new generation
//     and runs the previous system's switch-to-configuration.
//
// # On the host
//
// /var/lib/nixos-via/deploy/ID holds each deploy's state, log and
// decision (see supervisor.sh); /var/lib/nixos-via/deploy/last names the
// newest. They survive a cut connection, so a re-run reports the outcome.
//
// # Errors
//
// A *RolledBackError: the host runs the previous generation again. An
// *Error says whether the host may have changed (Changed): false when the
// deploy failed before the profile or the running system was touched
// (paths may have been added to the store, which changes nothing).
package deploy
