# Waits up to SECONDS until deploy ID leaves the states of MODE (active:
# started, switching; final: also waiting and rolling-back), then prints
# its log from byte FROM on and "@@state STATE", "@@logsize N".
# Arguments: ROOT ID SECONDS MODE FROM.
R=$1 id=$2 secs=$3 mode=$4 from=$5
dir=$R/var/lib/nixos-via/deploy/$id
step=1 per=1
if sleep 0.01 2>/dev/null; then step=0.2 per=5; fi
i=0
while [ $i -lt $((secs * per)) ]; do
	s=$(cat "$dir/state" 2>/dev/null) || s=
	case "$s" in
	"" | started* | switching*) ;;
	waiting* | rolling-back*) [ "$mode" = final ] || break ;;
	*) break ;;
	esac
	sleep $step
	i=$((i + 1))
done
tail -c +$((from + 1)) "$dir/log" 2>/dev/null
echo
echo "@@state $(cat "$dir/state" 2>/dev/null)"
echo "@@logsize $(wc -c < "$dir/log" 2>/dev/null || echo 0)"
