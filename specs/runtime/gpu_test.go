package runtime_test

import (
	"os"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

// fakeNvidiaSMI puts first on this process's PATH, for the current spec, a shell script
// that stands in for nvidia-smi: this machine has no GPU. Asked exactly what the runtime
// asks (--query-compute-apps=pid,used_memory, CSV without header or units), it reports
// the pid written in the returned file, if any, as a process using 2048 MiB of GPU
// memory, as nvidia-smi prints it; asked anything else, it fails.
func fakeNvidiaSMI() (pidFile string) {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	pidFile = filepath.Join(dir, "gpu-pid")
	script := `#!/bin/sh
[ "$1" = "--query-compute-apps=pid,used_memory" ] && [ "$2" = "--format=csv,noheader,nounits" ] || { echo "unexpected arguments: $*" >&2; exit 2; }
[ -s ` + pidFile + ` ] && echo "$(cat ` + pidFile + `), 2048"
exit 0
`
	Expect(os.WriteFile(filepath.Join(dir, "nvidia-smi"), []byte(script), 0o755)).To(Succeed())
	path := os.Getenv("PATH")
	Expect(os.Setenv("PATH", dir+string(os.PathListSeparator)+path)).To(Succeed())
	DeferCleanup(os.Setenv, "PATH", path)
	return pidFile
}

// onGPU makes the fake nvidia-smi report pid as using 2048 MiB.
func onGPU(pidFile string, pid int) {
	GinkgoHelper()
	Expect(os.WriteFile(pidFile, []byte(strconv.Itoa(pid)), 0o644)).To(Succeed())
}

// gpuLimit is a pool of n workers recycled past limit bytes of GPU memory.
func gpuLimit(n int, limit int64) pyvisor.Config {
	return pool(n, func(p *pyvisor.PoolConfig) { p.Recycle.MaxGPUBytes = limit })
}

var _ = Describe("Recycling on GPU memory (nvidia-smi faked: no GPU here)", Label("python"), func() {
	It("recycles, in the same slot, a worker whose process uses more GPU memory than recycle.max_gpu_bytes", func() {
		pidFile := fakeNvidiaSMI()
		rt, _ := start(gpuLimit(2, 1<<30))
		pids := readyPIDs(rt)
		onGPU(pidFile, pids["default-1"])

		Eventually(func() int { return readyPIDs(rt)["default-1"] }, 15*time.Second).ShouldNot(Or(BeZero(), Equal(pids["default-1"])))
		Expect(stats(rt).Recycled).To(HaveKeyWithValue("max_gpu_memory", 1))
		Expect(stats(rt).Restarts).To(BeEmpty(), "a recycle is not a failure")
		Expect(readyPIDs(rt)).To(HaveKeyWithValue("default-0", pids["default-0"]), "the other worker was left alone")
		Consistently(func() map[string]int { return stats(rt).Recycled }, 2500*time.Millisecond).
			Should(HaveKeyWithValue("max_gpu_memory", 1), "the new process is not on the GPU")
	})

	It("counts the GPU memory of the processes a worker started", func() {
		pidFile := fakeNvidiaSMI()
		rt, _ := start(gpuLimit(1, 1<<30))
		worker := readyPIDs(rt)["default-0"]
		res, err := execute(rt, "spawn_children", nil)
		Expect(err).NotTo(HaveOccurred())
		var children map[string]int
		Expect(res.Decode(&children)).To(Succeed())
		onGPU(pidFile, children["child"])

		Eventually(func() int { return readyPIDs(rt)["default-0"] }, 15*time.Second).ShouldNot(Or(BeZero(), Equal(worker)))
		Expect(stats(rt).Recycled).To(HaveKeyWithValue("max_gpu_memory", 1))
	})

	It("leaves alone a worker under the limit", func() {
		pidFile := fakeNvidiaSMI()
		rt, _ := start(gpuLimit(1, 4<<30))
		worker := readyPIDs(rt)["default-0"]
		onGPU(pidFile, worker)
		Consistently(func() int { return readyPIDs(rt)["default-0"] }, 2500*time.Millisecond).Should(Equal(worker))
		Expect(stats(rt).Recycled).To(BeEmpty())
	})

	It("warns once and never recycles for it when nvidia-smi is not on PATH", func() {
		empty := GinkgoT().TempDir()
		DeferCleanup(os.Setenv, "PATH", os.Getenv("PATH"))
		Expect(os.Setenv("PATH", empty)).To(Succeed())
		rt, logs := start(gpuLimit(2, 1))
		pids := readyPIDs(rt)
		Consistently(func() map[string]int { return readyPIDs(rt) }, 2500*time.Millisecond).Should(Equal(pids))
		Expect(stats(rt).Recycled).To(BeEmpty())
		warnings := logs.Matching("recycle.max_gpu_bytes is set but nvidia-smi is not on PATH: workers will not be recycled for their GPU memory")
		Expect(warnings).To(HaveLen(1), "one warning for the pool, not one per worker or per check")
		Expect(warnings[0]).To(And(HaveKeyWithValue("level", "warn"), HaveKeyWithValue("pool", "default")))
	})
})
