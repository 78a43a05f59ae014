package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// nvidiaSMI is the command that reports GPU memory by process, looked up on PATH.
const nvidiaSMI = "nvidia-smi"

// computeAppsQuery asks nvidia-smi for one line per process using a GPU: "pid, MiB".
var computeAppsQuery = []string{"--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"}

// How often the GPU memory is read, and how long one read may take.
const (
	gpuEvery       = time.Second
	gpuReadTimeout = 10 * time.Second
)

// gpuWatch reads GPU memory by process for RecycleSpec.MaxGPUBytes. It is used by one
// goroutine, the pool's recycle ticker.
type gpuWatch struct {
	path    string
	log     zerolog.Logger
	last    time.Time
	failing bool // the last read failed (and said so)
}

// newGPUWatch finds nvidia-smi on PATH; without it, it logs one warning and returns
// nil: GPU memory is never read, and never recycles a worker.
func newGPUWatch(log zerolog.Logger) *gpuWatch {
	path, err := exec.LookPath(nvidiaSMI)
	if err != nil {
		log.Warn().Err(err).Msg("recycle.max_gpu_bytes is set but nvidia-smi is not on PATH: workers will not be recycled for their GPU memory")
		return nil
	}
	return &gpuWatch{path: path, log: log}
}

// poll reads GPU memory by process, each process's with its descendants', if a read is
// due (one per gpuEvery); nil when none is due or the read failed. The first failure
// of a run of them is logged as a warning, the recovery after them as info.
func (g *gpuWatch) poll(ctx context.Context) map[int]int64 {
	if g == nil || time.Since(g.last) < gpuEvery {
		return nil
	}
	g.last = time.Now()
	rctx, cancel := context.WithTimeout(ctx, gpuReadTimeout)
	defer cancel()
	use, err := gpuMemory(rctx, g.path)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil // the pool is stopping
	case err != nil:
		if !g.failing {
			g.log.Warn().Err(err).Msg("reading GPU memory failed: workers are not recycled for it until a read succeeds")
		}
		g.failing = true
		return nil
	case g.failing:
		g.log.Info().Msg("reading GPU memory works again")
		g.failing = false
	}
	return use
}

// gpuMemory runs nvidia-smi at path and returns the GPU memory, in bytes, used by each
// process and the processes below it.
func gpuMemory(ctx context.Context, path string) (map[int]int64, error) {
	out, err := exec.CommandContext(ctx, path, computeAppsQuery...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && len(exit.Stderr) > 0 {
			return nil, fmt.Errorf("%s: %w: %s", path, err, bytes.TrimSpace(exit.Stderr))
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	use, err := parseComputeApps(out)
	if err != nil {
		return nil, err
	}
	return withAncestors(use, parentPID), nil
}

// parseComputeApps parses the output of nvidia-smi with computeAppsQuery into bytes by
// pid (a process on several GPUs: their sum). A process whose memory is not reported
// ("[N/A]": MIG, some drivers) counts nothing; any other line is an error.
func parseComputeApps(out []byte) (map[int]int64, error) {
	use := map[int]int64{}
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		pidText, mibText, ok := strings.Cut(line, ",")
		pid, err := strconv.Atoi(strings.TrimSpace(pidText))
		if !ok || err != nil || pid <= 0 {
			return nil, fmt.Errorf("nvidia-smi --query-compute-apps: want \"pid, MiB\", got %q", line)
		}
		mibText = strings.TrimSpace(mibText)
		if strings.HasPrefix(mibText, "[") {
			continue
		}
		mib, err := strconv.ParseInt(mibText, 10, 64)
		if err != nil || mib < 0 {
			return nil, fmt.Errorf("nvidia-smi --query-compute-apps: want \"pid, MiB\", got %q", line)
		}
		use[pid] += mib << 20
	}
	return use, nil
}

// withAncestors returns use with each process's amount added to each of its ancestors'
// too (parent gives a pid's parent, 0 when unknown): a worker's total is what it and
// the processes it started use.
func withAncestors(use map[int]int64, parent func(int) int) map[int]int64 {
	total := make(map[int]int64, len(use))
	for pid, n := range use {
		seen := map[int]bool{}
		for p := pid; p > 0 && !seen[p]; p = parent(p) {
			seen[p] = true
			total[p] += n
		}
	}
	return total
}

// parentPID reads the parent of pid from /proc, 0 if unknown (gone, or no /proc).
func parentPID(pid int) int {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}
