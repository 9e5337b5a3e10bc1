// Package closure copies a closure into a target's /nix/store without Nix on
// the target: a sender (Send) streams NARs from the local store over a Runner
// (an SSH session to the target) to `nixos-via agent receive` (ServeReceive,
// Receive), which restores and verifies each path and moves it into place
// atomically; `nixos-via agent query` (AnswerQuery) tells the sender which
// paths are there already. The install steps that follow (registration, the
// system profile, the bootloader) are package install's; this package only
// moves paths and keeps the records of what it received.
//
// # Stream format, version 1
//
// The stream is one zstd stream (klauspost/compress; a new frame wherever the
// sender changes its level, and frames of raw blocks where it does not
// compress) whose content is a sequence of items. Integers are little-endian uint64; a string is its length
// as an integer followed by its bytes.
//
//	magic     string "nixos-via-closure", integer version (1)
//	path      integer 1, string store path, integer narSize, string narHash
//	          ("sha256:<nix base32>"), integer n, n strings (references),
//	          string deriver ("" if none), then narSize bytes of NAR
//	trailer   integer 2, integer number of paths, integer sum of narSize
//
// After the trailer the receiver commits what it received and answers on its
// stdout with one line "ok <paths> <narBytes>"; anything else, or a non-zero
// exit, is a failure.
//
// The first receiver's stdin starts with a query instead (the text protocol
// in query.go, which cannot be taken for a zstd frame): the agent answers it
// on stdout before it reads the stream, so the sender learns what is missing
// without opening a session for that alone.
//
// # What is on the target
//
// A received path appears at <root>/nix/store/<name> only when it is complete:
// it is restored under <root>/nix/store/.nixos-via-tmp-<name>-<random>, its
// sha256 and size are checked against the header, and then, in batches (by
// size, count and age), the receiver writes the batch's registration records
// (the `nix-store --load-db` text of its paths, between a header line and an
// "end <count>" line) to a temporary file in <root>/nix/var/nixos-via/valid,
// syncs the filesystem, renames the paths into place, and renames the record
// file to <time>-<random>.reg. A path is valid for a later run when it exists
// and the newest complete record of it has the narHash the sender wants;
// the query answers that question, so a re-run sends only what is
// missing, and it removes temporaries a killed receiver left behind. The
// records together are the registration of what was received (ReadRecords).
package closure
