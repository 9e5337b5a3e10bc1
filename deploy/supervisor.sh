# The deploy supervisor: started detached on the host (a transient systemd
# unit, or setsid with output to a log file), so it outlives the SSH
# session that started it. It switches, waits for the confirmation that
# nixos-via sends over a brand-new SSH connection, and restores the
# previous generation itself when none comes in time, a check failed or
# the switch failed.
#
# Arguments: ROOT ID TOPLEVEL ACTION MAGIC TIMEOUT. ROOT prefixes every
# host path ("" on a real host). The deploy directory D/ID holds:
#   state     one line, the supervisor's progress: started, switching,
#             waiting SECONDS, rolling-back REASON, and at the end one of
#             deployed [generation N], rolled-back REASON,
#             rollback-failed REASON, failed REASON, dry-activated
#   log       everything the supervisor and switch-to-configuration print
#   decision/ made (mkdir, atomic) by whoever decides first: the
#             confirmation (decision/what: confirmed, or check-failed CMD)
#             or the supervisor when the time is up (timeout)
# D/lock/pid is the supervisor's PID while it runs: the deploy lock.
R=$1 id=$2 top=$3 action=$4 magic=$5 timeout=$6
D=$R/var/lib/nixos-via/deploy
dir=$D/$id
P=$R/nix/var/nix/profiles
exec </dev/null >>"$dir/log" 2>&1
trap '' HUP INT
echo $$ > "$D/lock/pid.tmp" && mv -f "$D/lock/pid.tmp" "$D/lock/pid"

setstate() {
	printf '%s\n' "$*" > "$dir/state.tmp" && mv -f "$dir/state.tmp" "$dir/state"
	echo "nixos-via deploy: $*"
}
finish() {
	rm -f "$R/nix/var/nix/gcroots/nixos-via-deploy"
	[ "$(cat "$D/lock/pid" 2>/dev/null)" = "$$" ] && rm -rf "$D/lock"
	exit 0
}
stc() { # stc TOPLEVEL ACTION: that system's switch-to-configuration
	"$R$1/bin/switch-to-configuration" "$2"
}
# decide WHAT: be the one who decides, or read what was decided.
decide() {
	if mkdir "$dir/decision" 2>/dev/null; then
		printf '%s\n' "$1" > "$dir/decision/what.tmp" && mv -f "$dir/decision/what.tmp" "$dir/decision/what"
	fi
	i=0
	while [ ! -e "$dir/decision/what" ] && [ $i -lt 50 ]; do sleep 1; i=$((i + 1)); done
	cat "$dir/decision/what" 2>/dev/null || echo "timeout"
}

setstate started
prevlink=$(readlink "$P/system" 2>/dev/null) || prevlink=
prevtop=$(readlink "$R/run/current-system" 2>/dev/null) || prevtop=
newlink=
echo "previous: profile $prevlink, running $prevtop; new: $top ($action)"

# The profile, as nix-env --set does: a new generation system-N-link, the
# system link moved to it (unless the current one already is this system).
if [ "$action" = switch ] || [ "$action" = boot ]; then
	mkdir -p "$P"
	n=0
	for l in "$P"/system-*-link; do
		[ -L "$l" ] || continue
		g=${l##*/system-}
		g=${g%-link}
		case "$g" in *[!0-9]*) continue ;; esac
		[ "$g" -gt "$n" ] && n=$g
	done
	if [ -n "$prevlink" ] && [ "$(readlink "$P/$prevlink")" = "$top" ]; then
		echo "profile: the current generation ${prevlink#system-} is already this system"
	else
		n=$((n + 1))
		newlink=system-$n-link
		ln -sfn "$top" "$P/$newlink"
		ln -sfn "$newlink" "$P/system"
		echo "profile: system generation $n"
	fi
fi

rollback() {
	setstate "rolling-back $1"
	ok=1
	if [ -n "$newlink" ]; then
		if [ -n "$prevlink" ]; then ln -sfn "$prevlink" "$P/system"; else rm -f "$P/system"; fi
		rm -f "$P/$newlink"
	fi
	proftop=
	[ -n "$prevlink" ] && proftop=$(readlink "$P/$prevlink")
	case "$action" in
	switch)
		if [ -n "$prevtop" ] && [ "$prevtop" = "$proftop" ]; then
			stc "$prevtop" switch || ok=0
		else
			[ -z "$prevtop" ] || stc "$prevtop" test || ok=0
			[ -z "$proftop" ] || stc "$proftop" boot || ok=0
		fi
		;;
	test) [ -z "$prevtop" ] || stc "$prevtop" test || ok=0 ;;
	boot) [ -z "$proftop" ] || stc "$proftop" boot || ok=0 ;;
	esac
	if [ $ok = 1 ]; then
		setstate "rolled-back $1"
	else
		setstate "rollback-failed $1"
	fi
	finish
}

setstate switching
if stc "$top" "$action"; then
	:
else
	rc=$?
	if [ "$magic" = 1 ] && [ "$action" != dry-activate ]; then
		rollback "switch-to-configuration $action failed (exit $rc)"
	fi
	setstate "failed switch-to-configuration $action failed (exit $rc)"
	finish
fi

case "$action" in
dry-activate)
	setstate dry-activated
	finish
	;;
esac
if [ "$magic" != 1 ] || [ "$action" = boot ]; then
	setstate "deployed${newlink:+ generation ${n}}"
	finish
fi

setstate "waiting $timeout"
step=1 per=1
if sleep 0.01 2>/dev/null; then step=0.2 per=5; fi
i=0
while [ ! -d "$dir/decision" ] && [ $i -lt $((timeout * per)) ]; do
	sleep $step
	i=$((i + 1))
done
what=$(decide timeout)
case "$what" in
confirmed)
	setstate "deployed${newlink:+ generation ${n}}"
	finish
	;;
timeout) rollback "no confirmation within ${timeout}s" ;;
*) rollback "$what" ;;
esac
