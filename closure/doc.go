// Package closure copies a closure into a target's /nix/store without Nix on
// the target: a sender (Send) streams NARs from the local store over a Runner
// (an SSH session to the target) to `nixos-via agent receive` (ServeReceive,
// Receive), which restores and verifies each path and moves it into place
// atomically; `nixos-via agent query` (AnswerQuery) tells the sender which
// paths are there already; `nixos-via agent substitute` (ServeSubstitute)
// fetches missing paths from binary caches on the target itself, checked
// against the sender's narHash, so only what the caches lack is streamed.
// The install steps that follow (registration, the
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
// # Substitution on the destination
//
// With SendOptions.Substitute.Caches set, once the query has answered (it
// removes stale temporaries, so nothing may restore before it), Send opens
// one more session, `agent substitute`, beside the receivers, and feeds it
// a request (text, see substitute_wire.go): the cache URLs, options
// (narinfo lookups and NAR downloads in flight, connect and stall
// timeouts), and every missing path with the sender's narHash, narSize,
// references and deriver. The agent reads each cache's nix-cache-info
// and orders the caches by priority as Nix does (the URL's ?priority=,
// else the cache's Priority, else 0; lower first, ties as listed; a cache
// without nix-cache-info or for another store directory is left out),
// then looks each path up in that order (<cache>/<hash part>.narinfo), fetches the NAR of the first
// narinfo that is for that path with our narHash and narSize, unpacks it
// (xz, zstd, bzip2, gzip or none) and restores it as a streamed path is
// restored: same temporaries, the same narSize and narHash check, the same
// batched sync, renames and registration records. It answers one line per
// path: "got <path>" once the path is in place and recorded, or "miss <path>
// <reason>" once nothing of it is left; then "end <got> <miss>".
//
// Send puts every miss on the stream's queue as it comes, so the receivers
// stream what the caches lack while the agent still fetches the rest (a
// channel flushes its zstd stream whenever its queue runs dry, so a
// streamed path does not wait in the buffers for the caches); the
// paths the agent never answered (it failed, or is an agent without the
// verb) are queued only after its session has ended, so no path is both
// fetched and streamed, and none is lost. A failed substitute session is a
// warning, not a failure: everything it did not get is streamed. Without
// caches, nothing of this happens and the wire format is the one above.
//
// A cache's answers are untrusted: a narinfo is at most 64 KiB and must name
// the wanted path with our narHash and narSize; its URL must be a clean
// relative path below the cache (no scheme, host, query, "/" prefix or
// ".."); a compressed NAR may be at most narSize/32 + 64 KiB bigger than the
// NAR, the unpacked NAR exactly narSize with nothing after it; an xz NAR's
// blocks may ask for a dictionary of at most 64 MiB (xz -9's), so a cache
// cannot make the agent allocate gigabytes (the target's xz(1) of XZ Utils
// decodes it when there is one, run with --memlimit-decompress to the same
// bound; else the built-in decoder); restoring
// refuses entry names that could escape the temporary. The content is
// checked against our narHash, so signatures need no checking. A cache
// that cannot be reached is asked no more in that run; a response that
// brings less than 64 KiB in a stall timeout before its end (nothing, or a
// trickle) is given up, so no cache holds the install. Over https the agent uses
// the system's CA files or, when there are none (a static binary on a
// rescue system), the Mozilla roots built in (x509roots/fallback).
//
// # From another store (--from)
//
// BinaryCache reads a closure that is not in the local store from a
// file:// or http(s):// binary cache: Closure walks the narinfo References
// from the toplevel (16 requests in flight, at most 100,000 paths, each
// narinfo checked as a substituter's: 64 KiB, valid store paths, a clean
// URL below the cache, a known compression), and as Send's Source it
// fetches, unpacks and checks each NAR against its narinfo's NarHash and
// NarSize before (or, for a path too big to hold, while) it is streamed;
// the agent checks it again. Here the cache's narinfo is the trust root:
// nothing local says what the path should be, and its signatures are not
// checked, so give --from only a store you trust as you trust the local
// one. When the cache is http(s) the target may also substitute from it:
// the path-info the agent checks against is then the same narinfo's.
//
// SSHStore reads it from an ssh:// or ssh-ng:// host (ParseSSHStore) by
// running the host's nix-store over SSH: `--query --requisites` piped to
// `--dump-db` gives the registered path-info (narHash in base16), and a
// few long-lived sessions, one per NAR in flight, each run a shell loop
// that answers a store path on stdin with its `nix-store --dump` NAR. Each
// NAR is checked against the registered narSize and narHash before it is
// taken (a path changed on the host's disk is refused); a path the host
// cannot dump ends its session, so no bytes are taken for another path's.
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
