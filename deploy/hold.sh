# Takes the deploy lock (a directory: mkdir is atomic; D/lock/pid says who
# holds it, a dead holder's lock is taken over) and, with flock, a shared
# lock on Nix's GC lock, so that no garbage collection runs while paths
# arrive and are registered. Prints "locked gc=yes|no", then holds both
# until stdin ends. The supervisor takes the deploy lock over by writing
# its PID. Arguments: ROOT ID.
R=$1 id=$2
D=$R/var/lib/nixos-via/deploy
mkdir -p "$D"
if ! mkdir "$D/lock" 2>/dev/null; then
	pid=$(cat "$D/lock/pid" 2>/dev/null) || pid=
	if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
		echo "taking over the lock of deploy $(cat "$D/lock/id" 2>/dev/null), whose process $pid is gone"
		rm -rf "$D/lock"
		mkdir "$D/lock" 2>/dev/null || { echo "busy $(cat "$D/lock/id" 2>/dev/null)"; exit 75; }
	else
		echo "busy $(cat "$D/lock/id" 2>/dev/null || echo unknown) ${pid:-unknown}"
		exit 75
	fi
fi
echo "$id" > "$D/lock/id"
echo $$ > "$D/lock/pid"
release() { [ "$(cat "$D/lock/pid" 2>/dev/null)" = "$$" ] && rm -rf "$D/lock"; }
trap release EXIT
trap 'exit 1' HUP INT TERM PIPE
gc=no
if [ -d "$R/nix/var/nix" ] && command -v flock >/dev/null 2>&1; then
	exec 9>>"$R/nix/var/nix/gc.lock"
	flock -s 9 && gc=yes
fi
echo "locked gc=$gc"
cat >/dev/null
