package closure

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// cpuTimes is the machine's CPU time so far, from the first line of
// /proc/stat, in clock ticks: all of it, and the idle part (idle and
// iowait), over every CPU.
type cpuTimes struct {
	total, idle uint64
	cpus        int
}

// readCPUTimes reads /proc/stat. Where there is none (not Linux), it
// fails, and the compression follows the link alone.
func readCPUTimes() (cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseCPUTimes(data)
}

func parseCPUTimes(data []byte) (cpuTimes, error) {
	var t cpuTimes
	lines := bytes.Split(data, []byte("\n"))
	f := bytes.Fields(lines[0])
	if len(f) < 5 || string(f[0]) != "cpu" {
		return cpuTimes{}, errors.New("/proc/stat: no cpu line")
	}
	// user nice system idle iowait irq softirq steal (guest time is already
	// in user and nice).
	for i, field := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(string(field), 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %w", err)
		}
		t.total += v
		if i == 3 || i == 4 {
			t.idle += v
		}
	}
	for _, l := range lines[1:] {
		if len(l) > 3 && string(l[:3]) == "cpu" && l[3] >= '0' && l[3] <= '9' {
			t.cpus++
		}
	}
	if t.cpus == 0 {
		return cpuTimes{}, errors.New("/proc/stat: no per-CPU lines")
	}
	return t, nil
}

// spareSince is how many CPUs, on average, were idle between an earlier
// reading and this one (-1 when no time passed or there was no reading).
func (t cpuTimes) spareSince(before cpuTimes) float64 {
	if before.cpus == 0 || t.total <= before.total || t.idle < before.idle {
		return -1
	}
	return float64(t.idle-before.idle) / float64(t.total-before.total) * float64(t.cpus)
}
