# The confirmation, run over a brand-new SSH connection: the checks (each
# --check command, by sh -c) run first; then, if the deploy still waits,
# the decision is made (mkdir, so it races the supervisor's timeout
# safely): confirmed, or check-failed. Prints the decision, or "late STATE"
# when the supervisor decided first. Arguments: ROOT ID CHECK...
R=$1 id=$2
shift 2
dir=$R/var/lib/nixos-via/deploy/$id
case "$(cat "$dir/state" 2>/dev/null)" in
waiting*) ;;
*) echo "late $(cat "$dir/state" 2>/dev/null)"; exit 0 ;;
esac
what=confirmed
for c in "$@"; do
	echo "check: $c"
	out=$(sh -c "$c" </dev/null 2>&1)
	rc=$?
	[ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/check output: /'
	if [ "$rc" != 0 ]; then what="check failed: $c (exit $rc)"; break; fi
done
if mkdir "$dir/decision" 2>/dev/null; then
	printf '%s\n' "$what" > "$dir/decision/what.tmp" && mv -f "$dir/decision/what.tmp" "$dir/decision/what"
	echo "decided $what"
else
	echo "late $(cat "$dir/state" 2>/dev/null)"
fi
