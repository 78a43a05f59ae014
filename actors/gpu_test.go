package actors

import (
	"maps"
	"strings"
	"testing"
)

func TestParseComputeApps(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		out  string
		want map[int]int64
	}{
		{"no process on any GPU", "", map[int]int64{}},
		{"one process", "4242, 1024\n", map[int]int64{4242: 1024 * mib}},
		{"several, spaced as nvidia-smi pads them", "  101, 512\n202,  2048 \r\n\n", map[int]int64{101: 512 * mib, 202: 2048 * mib}},
		{"a process on two GPUs counts both", "7, 100\n7, 300\n", map[int]int64{7: 400 * mib}},
		{"memory not reported (MIG, some drivers)", "7, [N/A]\n8, [Not Supported]\n9, 1\n", map[int]int64{9: mib}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseComputeApps([]byte(tt.out))
			if err != nil {
				t.Fatalf("parseComputeApps: %v", err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("parseComputeApps = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseComputeAppsRefusesWhatItDoesNotKnow(t *testing.T) {
	for _, out := range []string{
		"No devices were found\n",
		"pid, used_gpu_memory [MiB]\n4242, 1024\n", // a header: the query lost noheader
		"4242, 1024 MiB\n",                         // units: the query lost nounits
		"4242\n",
	} {
		if got, err := parseComputeApps([]byte(out)); err == nil {
			t.Errorf("parseComputeApps(%q) = %v, want an error", out, got)
		} else if !strings.Contains(err.Error(), "nvidia-smi") {
			t.Errorf("parseComputeApps(%q): error %q does not say whose output it is", out, err)
		}
	}
}

func TestWithAncestors(t *testing.T) {
	// 1 -> 10 (a worker) -> 11 -> 12; 1 -> 20 (another worker)
	parents := map[int]int{10: 1, 11: 10, 12: 11, 20: 1}
	parent := func(pid int) int { return parents[pid] }
	got := withAncestors(map[int]int64{11: 3, 12: 4, 20: 5}, parent)
	want := map[int]int64{1: 12, 10: 7, 11: 7, 12: 4, 20: 5}
	if !maps.Equal(got, want) {
		t.Errorf("withAncestors = %v, want %v", got, want)
	}
}

func TestWithAncestorsStopsOnACycle(t *testing.T) {
	// pids are reused: a stale read may make a loop, which must not hang the pool.
	parent := func(pid int) int { return map[int]int{5: 6, 6: 5}[pid] }
	got := withAncestors(map[int]int64{5: 1}, parent)
	if got[5] != 1 || got[6] != 1 {
		t.Errorf("withAncestors = %v, want each of 5 and 6 counted once", got)
	}
}
