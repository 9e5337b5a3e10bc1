# --- helpers (nixos-via disko) ---------------------------------------------
# Work without udev: partitions are found through /dev/disk/by-partlabel when
# udev made the link, else through blkid (PARTLABEL/PARTUUID) or the partition
# number of the parent disk in sysfs, and every wait has a deadline
# (DISKO_DEVICE_TIMEOUT seconds). Nothing here prints a secret: key material
# only ever flows through pipes.
disko_timeout=${DISKO_DEVICE_TIMEOUT:-120}
# Without a running udev, libdevmapper (LVM, cryptsetup) must create the
# /dev/mapper and /dev/VG/LV nodes itself instead of waiting for udev.
if [ ! -e /run/udev/control ]; then
	DM_DISABLE_UDEV=1
	export DM_DISABLE_UDEV
fi

disko_log() { printf 'disko: %s\n' "$*" >&2; }
disko_die() {
	printf 'disko: error: %s\n' "$*" >&2
	exit 1
}
disko_run() {
	printf 'disko: + %s\n' "$*" >&2
	"$@"
}
disko_has() { command -v "$1" >/dev/null 2>&1; }

# busybox sh runs its own applets (mount, partprobe, blkid, swapon…) before
# looking at PATH; their options differ (no blkid -p, a partprobe that drops
# partitions the kernel cannot parse itself). Prefer the real tools when they
# are installed.
disko_bin() {
	_ifs=$IFS
	IFS=:
	for _dir in $PATH; do
		if [ -n "$_dir" ] && [ -x "$_dir/$1" ] && [ ! -d "$_dir/$1" ]; then
			IFS=$_ifs
			printf '%s\n' "$_dir/$1"
			return 0
		fi
	done
	IFS=$_ifs
	return 1
}
for _tool in blkid partprobe mount umount swapon swapoff mkswap blockdev wipefs; do
	if _path=$(disko_bin "$_tool"); then
		case "$_path" in
		*[!A-Za-z0-9_./-]*) ;;
		*) eval "$_tool() { $_path \"\$@\"; }" ;;
		esac
	fi
done

# disko_settle [DEV]: make the kernel (and udev, if it runs) see new partitions.
disko_settle() {
	if [ -n "${1-}" ]; then
		partprobe "$1" >/dev/null 2>&1 || blockdev --rereadpt "$1" >/dev/null 2>&1 || :
	fi
	if disko_has udevadm && [ -e /run/udev/control ]; then
		udevadm trigger --subsystem-match=block >/dev/null 2>&1 || :
		udevadm settle --timeout 120 >/dev/null 2>&1 || :
	fi
}

# disko_md_active DEV: DEV is a running md array (a stopped array can keep
# its device node and /dev/md/NAME link).
disko_md_active() {
	_k=$(disko_kname "$1")
	[ -r "/sys/class/block/$_k/md/array_state" ] || return 1
	case "$(cat "/sys/class/block/$_k/md/array_state")" in
	clear | inactive) return 1 ;;
	esac
	return 0
}

# disko_md_find NAME: the block device of md array NAME, if assembled.
disko_md_find() {
	if [ -b "/dev/md/$1" ] && disko_md_active "/dev/md/$1"; then
		printf '%s\n' "/dev/md/$1"
		return 0
	fi
	disko_has mdadm || return 1
	for _m in /dev/md[0-9]*; do
		[ -b "$_m" ] || continue
		case "${_m#/dev/md}" in *p*) continue ;; esac
		disko_md_active "$_m" || continue
		if mdadm --detail --export "$_m" 2>/dev/null | n="$1" awk -F= '
			$1 == "MD_NAME" { v = $2; sub(/^[^:]*:/, "", v); if (v == ENVIRON["n"]) f = 1 }
			$1 == "MD_DEVNAME" && $2 == ENVIRON["n"] { f = 1 }
			END { exit !f }'; then
			printf '%s\n' "$_m"
			return 0
		fi
	done
	return 1
}

disko_wait_tick() {
	if [ "$_w" -ge "$disko_timeout" ]; then
		disko_log "timed out after ${disko_timeout}s waiting for $1"
		return 1
	fi
	if [ "$_w" -eq 0 ]; then disko_settle "${2-}"; fi
	sleep 1
	_w=$((_w + 1))
}

# disko_dev PATH: wait for a block device and print its path.
disko_dev() {
	_w=0
	while :; do
		case "$1" in
		/dev/md/*)
			if _r=$(disko_md_find "${1#/dev/md/}"); then
				printf '%s\n' "$_r"
				return 0
			fi
			;;
		*)
			if [ -b "$1" ]; then
				printf '%s\n' "$1"
				return 0
			fi
			if _r=$(disko_disk_link "$1"); then
				printf '%s\n' "$_r"
				return 0
			fi
			;;
		esac
		disko_wait_tick "block device $1" || return 1
	done
}

# disko_disk_link PATH: the whole disk a udev /dev/disk/by-diskseq or
# /dev/disk/by-id link would point to, found in sysfs when udev made no links
# (by-id: wwn-, nvme-MODEL_SERIAL, virtio-SERIAL, and any -SERIAL suffix).
disko_disk_link() {
	case "$1" in
	/dev/disk/by-diskseq/*) _want=${1#/dev/disk/by-diskseq/} _kind=seq ;;
	/dev/disk/by-id/*) _want=${1#/dev/disk/by-id/} _kind=id ;;
	*) return 1 ;;
	esac
	case "$_want" in *-part[0-9]*) return 1 ;; esac
	_found=''
	for _s in /sys/class/block/*; do
		[ -e "$_s/partition" ] && continue
		_n=${_s##*/}
		if [ "$_kind" = seq ]; then
			if [ "$(cat "$_s/diskseq" 2>/dev/null)" = "$_want" ]; then _found="$_found $_n"; fi
			continue
		fi
		_wwid=$(cat "$_s/wwid" 2>/dev/null || cat "$_s/device/wwid" 2>/dev/null || :)
		_serial=$(cat "$_s/serial" 2>/dev/null || cat "$_s/device/serial" 2>/dev/null || :)
		_model=$(cat "$_s/device/model" 2>/dev/null || :)
		_serial=$(printf '%s' "$_serial" | sed 's/^ *//; s/ *$//; s/ /_/g')
		_model=$(printf '%s' "$_model" | sed 's/^ *//; s/ *$//; s/ /_/g')
		case "$_want" in
		wwn-*) [ -n "$_wwid" ] && [ "wwn-${_wwid#naa.}" = "$_want" ] && _found="$_found $_n" ;;
		nvme-*) [ -n "$_serial" ] && [ "nvme-${_model}_${_serial}" = "$_want" ] && _found="$_found $_n" ;;
		virtio-*) [ -n "$_serial" ] && [ "virtio-$_serial" = "$_want" ] && _found="$_found $_n" ;;
		*) [ -n "$_serial" ] && case "$_want" in *"_$_serial" | *"-$_serial") _found="$_found $_n" ;; esac ;;
		esac
	done
	set -- $_found
	[ $# -eq 1 ] || return 1
	printf '/dev/%s\n' "$1"
}

# disko_parent DEV: kernel name of the disk a partition belongs to.
disko_parent() {
	_s=$(readlink -f "/sys/class/block/$(disko_kname "$1")")
	_s=${_s%/*}
	printf '%s\n' "${_s##*/}"
}
disko_kname() {
	_p=$(readlink -f "$1")
	printf '%s\n' "${_p##*/}"
}

# disko_part_matches DEV NAME UUID: the GPT entry of DEV has that name/uuid
# (accepted when blkid cannot tell, e.g. an msdos table).
disko_part_matches() {
	if [ -n "$2" ]; then
		_n=$(blkid -p -s PART_ENTRY_NAME -o value "$1" 2>/dev/null) || _n=''
		if [ -n "$_n" ] && [ "$_n" != "$2" ]; then return 1; fi
	fi
	if [ -n "$3" ]; then
		_n=$(blkid -p -s PART_ENTRY_UUID -o value "$1" 2>/dev/null) || _n=''
		_n=$(printf '%s' "$_n" | tr 'A-F' 'a-f')
		_u=$(printf '%s' "$3" | tr 'A-F' 'a-f')
		if [ -n "$_n" ] && [ "$_n" != "$_u" ]; then return 1; fi
	fi
	return 0
}

# disko_part_by_number DISK N: partition N of DISK from sysfs.
disko_part_by_number() {
	_b=$(disko_kname "$1")
	for _s in /sys/class/block/"$_b"/*/partition; do
		[ -r "$_s" ] || continue
		if [ "$(cat "$_s")" = "$2" ]; then
			_s=${_s%/partition}
			printf '/dev/%s\n' "${_s##*/}"
			return 0
		fi
	done
	return 1
}

# disko_part_named DISK NAME: the partition of DISK whose GPT entry is named
# NAME, compared byte for byte with what blkid -p reads from the entry (its
# -o value form is the raw name; blkid -t would strip quotes around it).
disko_part_named() {
	_b=$(disko_kname "$1")
	for _s in /sys/class/block/"$_b"/*/partition; do
		[ -r "$_s" ] || continue
		_s=${_s%/partition}
		_c=/dev/${_s##*/}
		[ -b "$_c" ] || continue
		if [ "$(blkid -p -s PART_ENTRY_NAME -o value "$_c" 2>/dev/null)" = "$2" ]; then
			printf '%s\n' "$_c"
			return 0
		fi
	done
	return 1
}

# disko_part_by_blkid DISK TAG=VALUE: the partition of DISK carrying that tag.
disko_part_by_blkid() {
	disko_has blkid || return 1
	_b=$(disko_kname "$1")
	for _c in $(blkid -o device -t "$2" 2>/dev/null); do
		if [ "$(disko_parent "$_c")" = "$_b" ]; then
			printf '%s\n' "$_c"
			return 0
		fi
	done
	return 1
}

# disko_part CANONICAL DISK N NAME UUID: wait for partition N of DISK and
# print its device. CANONICAL is the udev link (/dev/disk/by-partlabel/...,
# the name escaped as udev does), used when it exists. NAME is the GPT name
# exactly as the partitioning command stored it.
disko_part() {
	_w=0
	while :; do
		_r=''
		if [ -b "$1" ]; then
			_r=$1
		elif [ -n "$5" ] && _r=$(disko_part_by_blkid "$2" "PARTUUID=$5"); then
			:
		elif [ -n "$4" ] && _r=$(disko_part_named "$2" "$4"); then
			:
		elif _r=$(disko_part_by_number "$2" "$3"); then
			:
		else
			_r=''
		fi
		if [ -n "$_r" ] && [ -b "$_r" ] && disko_part_matches "$_r" "$4" "$5"; then
			printf '%s\n' "$_r"
			return 0
		fi
		disko_wait_tick "partition $3 of $2 ($1)" "$2" || return 1
	done
}

# disko_fstype DEV: the TYPE blkid finds on DEV ("" if none, "?" if blkid
# cannot tell).
disko_fstype() {
	if _o=$(blkid -p -o export "$1" 2>/dev/null); then
		printf '%s\n' "$_o" | sed -n 's/^TYPE=//p'
	else
		case $? in
		2) ;;
		*) printf '?\n' ;;
		esac
	fi
}

# disko_blank DEV: blkid finds no signature at all (no filesystem, no
# partition table).
disko_blank() {
	if blkid -p "$1" >/dev/null 2>&1; then
		return 1
	else
		[ $? -eq 2 ]
	fi
}

# disko_want_format DEV TYPE: true if DEV is empty; false if it already holds
# TYPE; stops the script if it holds something else.
disko_want_format() {
	_t=$(disko_fstype "$1")
	if [ -z "$_t" ]; then return 0; fi
	if [ "$_t" = "$2" ]; then return 1; fi
	disko_die "$1 already holds a '$_t' signature but the layout wants '$2'; refusing to format over it (wipe it first with the destroy mode)"
}

# disko_mounted TARGET: something is mounted on TARGET.
disko_mounted() {
	t="$1" awk 'BEGIN { t = ENVIRON["t"]; if (t != "/") sub(/\/+$/, "", t) }
		{ m = $2; gsub(/\\040/, " ", m); gsub(/\\011/, "\t", m); gsub(/\\012/, "\n", m); gsub(/\\134/, "\\", m)
		  if (m == t) f = 1 }
		END { exit !f }' /proc/self/mounts
}

# disko_swap_active DEV: DEV is an active swap area. A block device is
# compared by its device number: without udev, /proc/swaps may name it
# by a node of its own (/dev/mapper/vg-swap, not /dev/dm-6).
disko_swap_active() {
	_r=$(readlink -f "$1") || return 1
	if r="$_r" awk 'NR > 1 && $1 == ENVIRON["r"] { f = 1 } END { exit !f }' /proc/swaps; then return 0; fi
	[ -b "$_r" ] || return 1
	_n=$(stat -L -c '%t:%T' "$_r") || return 1
	for _s in $(awk 'NR > 1 && $2 == "partition" { print $1 }' /proc/swaps); do
		if [ -b "$_s" ] && [ "$(stat -L -c '%t:%T' "$_s" 2>/dev/null)" = "$_n" ]; then return 0; fi
	done
	return 1
}

# disko_umount_tree TARGET: unmount TARGET and everything below it, deepest
# (latest) first; works with busybox umount, which has no -R.
disko_umount_tree() {
	t="$1" awk 'BEGIN { t = ENVIRON["t"]; if (t != "/") sub(/\/+$/, "", t) }
		{ m = $2; gsub(/\\040/, " ", m); gsub(/\\011/, "\t", m); gsub(/\\134/, "\\", m)
		  if (m == t || index(m, t "/") == 1 || t == "/") print m }' /proc/self/mounts |
		sed -n '1!G;h;$p' | while IFS= read -r _t; do
		if disko_mounted "$_t"; then disko_run umount "$_t"; fi
	done
}

# disko_swapon DEV DISCARD-POLICY PRIORITY OPTIONS: util-linux swapon with
# every option, or busybox swapon with what it supports.
disko_swapon() {
	_d=$1 _pol=$2 _pri=$3 _opts=$4
	set --
	if swapon --help 2>&1 | grep -q -- --priority; then
		case "$_pol" in '') ;; both) set -- --discard ;; *) set -- "--discard=$_pol" ;; esac
		if [ -n "$_pri" ]; then set -- "$@" "--priority=$_pri"; fi
		disko_run swapon "$@" "--options=$_opts" "$_d"
	else
		case "$_pol" in '') ;; both) set -- -d ;; *) set -- "-d$_pol" ;; esac
		disko_log "busybox swapon: priority and options of $_d are left to NixOS"
		disko_run swapon "$@" "$_d"
	fi
}

# disko_mount TARGET MOUNT-ARGS...: mount unless TARGET is already a mountpoint.
disko_mount() {
	_t=$1
	shift
	if disko_mounted "$_t"; then return 0; fi
	mkdir -p "$_t"
	disko_run mount "$@"
}

# disko_need_key FILE NAME: stop unless the key (or password) file of LUKS
# NAME exists and is not empty, so that nothing is ever formatted with an
# empty key. The content stays in the shell.
disko_need_key() {
	if [ ! -r "$1" ] || [ -z "$(cat "$1")" ]; then
		disko_die "key file $1 of LUKS $2 is missing or empty (upload it first, e.g. --disk-encryption-keys)"
	fi
}

# disko_has_tty: /dev/tty can be opened. Its mode bits say nothing: without
# a controlling terminal `[ -r /dev/tty ]` holds but opening it fails
# (ENXIO), so open it, in a subshell because a failed redirection ends a
# POSIX shell.
disko_has_tty() { (exec 3<>/dev/tty) 2>/dev/null; }

# disko_password NAME: read a passphrase from the terminal (not echoed).
disko_password() {
	disko_has_tty || disko_die "LUKS $1 needs a passphrase but there is no terminal (use passwordFile or settings.keyFile)"
	# Echo goes off before the prompt shows, so nothing typed after it is
	# echoed.
	_s=$(stty -g </dev/tty)
	stty -echo </dev/tty
	printf 'Passphrase for %s: ' "$1" >/dev/tty
	IFS= read -r _p </dev/tty || _p=''
	stty "$_s" </dev/tty
	printf '\n' >/dev/tty
	printf '%s' "$_p"
}
disko_new_password() {
	while :; do
		_a=$(disko_password "$1")
		_b=$(disko_password "$1 (again)")
		if [ "$_a" = "$_b" ]; then
			printf '%s' "$_a"
			return 0
		fi
		printf 'Passphrases differ, try again.\n' >/dev/tty
	done
}

# disko_teardown KNAME: unmount, close and wipe everything stacked on the
# block device KNAME (partitions, holders), then KNAME itself.
disko_teardown() {
	for _c in /sys/class/block/"$1"/"$1"*; do
		if [ -e "$_c/partition" ]; then (disko_teardown "${_c##*/}"); fi
	done
	for _h in /sys/class/block/"$1"/holders/*; do
		if [ -e "$_h" ]; then (disko_teardown "${_h##*/}"); fi
	done
	_d=/dev/$1
	[ -b "$_d" ] || return 0
	_targets=$(while read -r _src _tgt _rest; do
		case "$_src" in /*) ;; *) continue ;; esac
		if [ "$(readlink -f "$_src" 2>/dev/null)" = "$_d" ]; then printf '%b\n' "$_tgt"; fi
	done </proc/self/mounts | sed -n '1!G;h;$p')
	if [ -n "$_targets" ]; then
		printf '%s\n' "$_targets" | while IFS= read -r _t; do
			disko_umount_tree "$_t"
		done
	fi
	if disko_swap_active "$_d"; then disko_run swapoff "$_d"; fi
	case "$(disko_fstype "$_d")" in
	LVM2_member)
		_vg=$(pvs --noheadings -o vg_name "$_d" 2>/dev/null | tr -d ' ') || _vg=''
		if [ -n "$_vg" ]; then
			disko_run vgchange -a n "$_vg" || :
			disko_run vgremove -ff -y "$_vg"
			# Without udev, LVM may leave /dev/VG/LV links to the removed
			# volumes, and vgcreate refuses a VG whose /dev/VG exists.
			if [ -d "/dev/$_vg" ] && [ ! -L "/dev/$_vg" ]; then
				for _l in "/dev/$_vg"/*; do
					if [ -L "$_l" ] && [ ! -e "$_l" ]; then rm -f "$_l"; fi
				done
				rmdir "/dev/$_vg" 2>/dev/null || :
			fi
		fi
		;;
	zfs_member)
		if disko_has zpool; then
			_pool=$(blkid -p -s LABEL -o value "$_d" 2>/dev/null) || _pool=''
			if [ -n "$_pool" ]; then disko_run zpool destroy -f "$_pool" 2>/dev/null || :; fi
			disko_run zpool labelclear -f "$_d" || :
		fi
		;;
	esac
	case "$1" in
	dm-*)
		_n=$(cat "/sys/class/block/$1/dm/name")
		_u=$(cat "/sys/class/block/$1/dm/uuid" 2>/dev/null) || _u=''
		disko_run wipefs --all -f "$_d" || :
		case "$_u" in
		CRYPT-*) disko_run cryptsetup close "$_n" ;;
		*) disko_run dmsetup remove "$_n" ;;
		esac
		;;
	md*)
		disko_run wipefs --all -f "$_d" || :
		disko_run mdadm --stop "$_d"
		;;
	*)
		disko_run wipefs --all -f "$_d"
		;;
	esac
}

# disko_wipe_disk DEV: tear down and wipe a whole disk.
disko_wipe_disk() {
	_dev=$(disko_dev "$1") || return 1
	_k=$(disko_kname "$_dev")
	(disko_teardown "$_k")
	disko_run dd if=/dev/zero of="/dev/$_k" bs=440 count=1 conv=notrunc 2>/dev/null
	blockdev --rereadpt "/dev/$_k" >/dev/null 2>&1 || partprobe "/dev/$_k" >/dev/null 2>&1 || :
	disko_settle
}
# --- end of helpers ----------------------------------------------------------
