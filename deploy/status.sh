# What the host has for a deploy: its nix-store, flock, init, the running
# system and profile, the last deploy and the lock. Argument: ROOT.
R=$1
D=$R/var/lib/nixos-via/deploy
ns=
for c in /run/current-system/sw/bin/nix-store /nix/var/nix/profiles/default/bin/nix-store; do
	[ -x "$R$c" ] && { ns=$c; break; }
done
if [ -z "$ns" ] && [ -z "$R" ]; then ns=$(command -v nix-store 2>/dev/null) || ns=; fi
echo "nixstore ${ns:-none}"
if command -v flock >/dev/null 2>&1; then echo "flock yes"; else echo "flock no"; fi
if [ -z "$R" ] && [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then echo "init systemd"; else echo "init other"; fi
cur=$(readlink "$R/run/current-system" 2>/dev/null) || cur=
echo "current ${cur:-none}"
if [ -n "$cur" ] && [ -n "$ns" ]; then
	if [ -n "$R" ]; then chroot "$R" "$ns" -qR "$cur"; else "$ns" -qR "$cur"; fi 2>/dev/null | sed 's/^/path /'
fi
last=$(cat "$D/last" 2>/dev/null) || last=
if [ -n "$last" ] && [ -d "$D/$last" ]; then
	echo "last $last"
	echo "lasttop $(cat "$D/$last/toplevel" 2>/dev/null)"
	echo "laststate $(cat "$D/$last/state" 2>/dev/null)"
	[ -e "$D/$last/reported" ] && echo "lastreported yes"
fi
if [ -d "$D/lock" ]; then
	pid=$(cat "$D/lock/pid" 2>/dev/null) || pid=
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then alive=alive; elif [ -n "$pid" ]; then alive=dead; else alive=unknown; fi
	echo "lock $(cat "$D/lock/id" 2>/dev/null || echo ?) $alive"
fi
exit 0
