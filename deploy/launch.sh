# Starts the supervisor (its text on stdin) detached: as a transient
# systemd unit when PID 1 is systemd, else in a session of its own
# (setsid) with its output in the deploy's log. Waits until it runs and
# holds the lock. Arguments: ROOT ID TOPLEVEL ACTION MAGIC TIMEOUT INIT.
set -e
R=$1 id=$2 top=$3 action=$4 magic=$5 timeout=$6 init=$7
D=$R/var/lib/nixos-via/deploy
dir=$D/$id
mkdir -p "$dir"
cat > "$dir/supervisor.sh"
printf '%s\n' "$top" > "$dir/toplevel"
printf '%s\n' "$action" > "$dir/action"
: > "$dir/log"
printf '%s\n' "$id" > "$D/last.tmp" && mv -f "$D/last.tmp" "$D/last"
sh=$(command -v sh)
if [ "$init" = systemd ]; then
	systemd-run --unit="nixos-via-deploy-$id" --collect --quiet --no-ask-password --service-type=exec \
		--setenv=PATH="$PATH" -- "$sh" "$dir/supervisor.sh" "$R" "$id" "$top" "$action" "$magic" "$timeout"
	echo "supervisor: systemd unit nixos-via-deploy-$id"
elif command -v setsid >/dev/null 2>&1; then
	setsid "$sh" "$dir/supervisor.sh" "$R" "$id" "$top" "$action" "$magic" "$timeout" </dev/null >/dev/null 2>&1 &
	echo "supervisor: detached process $!, log $dir/log"
else
	(trap '' HUP; exec "$sh" "$dir/supervisor.sh" "$R" "$id" "$top" "$action" "$magic" "$timeout") </dev/null >/dev/null 2>&1 &
	echo "supervisor: detached process $!, log $dir/log"
fi
i=0
while [ ! -s "$dir/state" ] && [ $i -lt 100 ]; do sleep 0.2 2>/dev/null || sleep 1; i=$((i + 1)); done
[ -s "$dir/state" ] || { echo "the supervisor did not start; its log:"; cat "$dir/log"; exit 1; }
