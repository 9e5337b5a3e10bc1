package closure

import (
	"math"
	"testing"
)

func TestSpareCPUs(t *testing.T) {
	const before = "cpu  1000 0 500 2000 100 0 10 40 12 0\ncpu0 500 0 250 1000 50 0 5 20 6 0\ncpu1 500 0 250 1000 50 0 5 20 6 0\nintr 1 2 3\n"
	tests := []struct {
		name  string
		after string
		want  float64
	}{
		// 200 ticks pass on two CPUs: 100 each.
		{"both idle", "cpu  1000 0 500 2180 120 0 10 40 12 0\ncpu0 x\ncpu1 x\n", 2},
		{"one busy, one idle", "cpu  1090 0 510 2100 100 0 10 40 12 0\ncpu0 x\ncpu1 x\n", 1},
		{"both busy, some stolen", "cpu  1150 0 530 2000 100 0 10 60 12 0\ncpu0 x\ncpu1 x\n", 0},
		{"a quarter idle", "cpu  1100 0 550 2040 110 0 10 40 12 0\ncpu0 x\ncpu1 x\n", 0.5},
		{"no time passed", before, -1},
	}
	b, err := parseCPUTimes([]byte(before))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		a, err := parseCPUTimes([]byte(tc.after))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := a.spareSince(b); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: spare CPUs %.3f, want %.3f", tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{"", "intr 1 2\n", "cpu  1 2 x 4 5\ncpu0 1\n", "cpu  1 2 3 4 5\n"} {
		if _, err := parseCPUTimes([]byte(bad)); err == nil {
			t.Errorf("parseCPUTimes(%q): no error", bad)
		}
	}
	if got := b.spareSince(cpuTimes{}); got != -1 {
		t.Errorf("spare CPUs since no reading: %.3f, want -1", got)
	}
	if _, err := readCPUTimes(); err != nil {
		t.Logf("this machine: %v (compression follows the link alone)", err)
	}
}
