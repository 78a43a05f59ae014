package runtime_test

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

// slotVars are the variables the slot specs read in their workers.
var slotVars = []string{"PYVISOR_SLOT", "PYVISOR_POOL", "CUDA_VISIBLE_DEVICES", "PORT", "RUN_NAME", "SHARED"}

// slotted is a pool of the slot_env tools (and the examples) with per-slot
// environment: a device each, round robin over two, and a port each.
func slotted(workers int, tweak ...func(*pyvisor.PoolConfig)) pyvisor.Config {
	return pool(workers, append([]func(*pyvisor.PoolConfig){func(p *pyvisor.PoolConfig) {
		p.Tools = []string{"pyvisor_worker.examples", "slot_env"}
		p.Env = map[string]string{"PYTHONPATH": modelTools, "SHARED": "pool", "PORT": "overridden by the slot's"}
		p.Slots = pyvisor.SlotsConfig{
			Devices: []string{"0", "1"},
			Env: map[string]string{
				"CUDA_VISIBLE_DEVICES": "{{.Device}}",
				"PORT":                 "{{add 9000 .Slot}}",
				"RUN_NAME":             "{{.Pool}}-{{.Slot}}-of-{{.Workers}}",
			},
		}
	}}, tweak...)...)
}

// workerEnv is what one call saw of its worker: the pid and slotVars.
type workerEnv struct {
	PID int
	Env map[string]*string
}

// value is the variable's value, "<unset>" when the worker does not have it.
func (w workerEnv) value(name string) string {
	if v := w.Env[name]; v != nil {
		return *v
	}
	return "<unset>"
}

// everyWorkerEnv runs one call on each of the pool's n workers at once (each holds its
// worker a moment, so no worker takes two) and returns what each saw, by the slot its
// PYVISOR_SLOT names.
func everyWorkerEnv(rt *pyvisor.Runtime, n int) map[int]workerEnv {
	GinkgoHelper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	seen := map[int]workerEnv{}
	for range n {
		wg.Go(func() {
			defer GinkgoRecover()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := pyvisor.Call[workerEnv](ctx, rt, "default", "environment", map[string]any{"names": slotVars, "hold": 0.5})
			Expect(err).NotTo(HaveOccurred())
			slot, err := strconv.Atoi(got.value("PYVISOR_SLOT"))
			Expect(err).NotTo(HaveOccurred(), "PYVISOR_SLOT is the slot's index")
			mu.Lock()
			defer mu.Unlock()
			Expect(seen).NotTo(HaveKey(slot), "each call ran on a worker of its own")
			seen[slot] = got
		})
	}
	wg.Wait()
	return seen
}

// envOf is the values of slotVars, without the pid.
func envOf(w workerEnv) map[string]string {
	out := map[string]string{}
	for _, name := range slotVars {
		out[name] = w.value(name)
	}
	return out
}

// slotOf is the Stats entry of the worker with id.
func slotOf(rt *pyvisor.Runtime, id string) pyvisor.WorkerStats {
	GinkgoHelper()
	for _, w := range stats(rt).Workers {
		if w.ID == id {
			return w
		}
	}
	Fail("no worker " + id + " in Stats")
	return pyvisor.WorkerStats{}
}

var _ = Describe("Worker slots", Label("python"), func() {
	It("gives each worker a slot index, its id's number, in Stats", func() {
		rt, _ := start(pool(3))
		var ids []string
		var slots []int
		for _, w := range stats(rt).Workers {
			ids, slots = append(ids, w.ID), append(slots, w.Slot)
		}
		Expect(ids).To(Equal([]string{"default-0", "default-1", "default-2"}))
		Expect(slots).To(Equal([]int{0, 1, 2}))
	})

	It("tells each worker process its slot and its pool in PYVISOR_SLOT and PYVISOR_POOL", func() {
		rt, _ := start(slotted(3))
		seen := everyWorkerEnv(rt, 3)
		Expect(seen).To(HaveLen(3))
		for _, w := range stats(rt).Workers {
			Expect(seen).To(HaveKey(w.Slot))
			Expect(seen[w.Slot].PID).To(Equal(w.PID), "slot %d's process says it is slot %d", w.Slot, w.Slot)
			Expect(seen[w.Slot].value("PYVISOR_POOL")).To(Equal("default"))
		}
	})

	It("gives each slot its templated environment: devices round robin, ports by slot, on top of the pool's env", func() {
		rt, _ := start(slotted(4))
		seen := everyWorkerEnv(rt, 4)
		Expect(seen).To(HaveLen(4))
		for slot, device := range []string{"0", "1", "0", "1"} { // 4 workers over 2 devices: 2 on each
			Expect(envOf(seen[slot])).To(Equal(map[string]string{
				"PYVISOR_SLOT":         strconv.Itoa(slot),
				"PYVISOR_POOL":         "default",
				"CUDA_VISIBLE_DEVICES": device,
				"PORT":                 strconv.Itoa(9000 + slot),
				"RUN_NAME":             "default-" + strconv.Itoa(slot) + "-of-4",
				"SHARED":               "pool",
			}), "slot %d", slot)
		}
	})

	It("gives one device to each worker when there are as many devices as workers", func() {
		rt, _ := start(slotted(2))
		seen := everyWorkerEnv(rt, 2)
		Expect(seen[0].value("CUDA_VISIBLE_DEVICES")).To(Equal("0"))
		Expect(seen[1].value("CUDA_VISIBLE_DEVICES")).To(Equal("1"))
	})

	Context("when a worker's Python process is killed", func() {
		It("restarts it in the same slot, with the same environment, as a new process", func() {
			rt, _ := start(slotted(2))
			before := everyWorkerEnv(rt, 2)
			victim := before[1].PID
			Expect(syscall.Kill(victim, syscall.SIGKILL)).To(Succeed())
			Eventually(func() int { return readyPIDs(rt)["default-1"] }).ShouldNot(Or(BeZero(), Equal(victim)))

			after := everyWorkerEnv(rt, 2)
			Expect(after[1].PID).NotTo(Equal(victim))
			Expect(envOf(after[1])).To(Equal(envOf(before[1])))
			Expect(after[0]).To(Equal(before[0]), "the other slot's process was left alone")
			Expect(slotOf(rt, "default-1")).To(HaveField("Slot", 1))
			Expect(stats(rt).Restarts).To(HaveKeyWithValue("crash", 1))
		})
	})

	Context("when a worker is recycled", func() {
		It("starts the new process in the same slot, with the same environment", func() {
			rt, _ := start(slotted(2, func(p *pyvisor.PoolConfig) { p.Recycle.MaxCalls = 1 }))
			first := everyWorkerEnv(rt, 2)
			Eventually(func() []int { return slices.Collect(maps.Values(readyPIDs(rt))) }).Should(
				And(HaveLen(2), Not(ContainElement(first[0].PID)), Not(ContainElement(first[1].PID))))
			second := everyWorkerEnv(rt, 2)
			for slot := range 2 {
				Expect(second[slot].PID).NotTo(Equal(first[slot].PID), "slot %d runs a fresh process", slot)
				Expect(envOf(second[slot])).To(Equal(envOf(first[slot])), "slot %d", slot)
			}
			Expect(stats(rt).Recycled).To(HaveKeyWithValue("max_calls", BeNumerically(">=", 2)))
			Expect(stats(rt).Restarts).To(BeEmpty())
		})
	})

	Context("when the pool is resized", func() {
		It("gives a slot freed by a shrink its own environment again when it comes back", func() {
			rt, _ := start(slotted(3))
			before := everyWorkerEnv(rt, 3)
			Expect(rt.Resize(context.Background(), "default", 2)).To(Succeed())
			Expect(rt.Resize(context.Background(), "default", 3)).To(Succeed())
			Eventually(func() map[string]int { return readyPIDs(rt) }).Should(HaveLen(3))
			after := everyWorkerEnv(rt, 3)
			Expect(after[2].PID).NotTo(Equal(before[2].PID))
			Expect(envOf(after[2])).To(Equal(envOf(before[2])))
		})

		It("refuses to grow into a slot whose environment cannot be made, and keeps serving", func() {
			rt, _ := start(slotted(2, func(p *pyvisor.PoolConfig) {
				p.Slots.Env["SHARD"] = "{{if ge .Slot 2}}{{index .Pool 99}}{{end}}" // fine for the 2 slots Start checks
			}))
			err := rt.Resize(context.Background(), "default", 3)
			Expect(err).To(MatchError(ContainSubstring("slot 2: slots.env.SHARD")))
			Expect(stats(rt).Workers).To(HaveLen(2))
			Expect(everyWorkerEnv(rt, 2)).To(HaveLen(2))
			Expect(rt.Resize(context.Background(), "default", 1)).To(Succeed(), "the refused resize is over")
		})
	})

	It("puts the slot on its workers' log lines, the Python ones too", func() {
		rt, logs := start(slotted(2))
		_, err := execute(rt, "log", map[string]any{"message": "from a tool"})
		Expect(err).NotTo(HaveOccurred())
		for _, line := range logs.Matching("python worker ready") {
			Expect(line).To(HaveKeyWithValue("slot", BeNumerically("==", slotIndex(line["worker"]))))
		}
		Expect(logs.Matching("python worker ready")).To(HaveLen(2))
		Eventually(func() []map[string]any { return logs.Matching("from a tool") }).Should(ContainElement(
			And(HaveKeyWithValue("source", "python"), HaveKey("slot"))))
		Expect(logs.DuplicateKeys()).To(BeEmpty())
	})
})

// slotIndex is the index in a worker id such as "default-1".
func slotIndex(id any) int {
	s, _ := id.(string)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '-' {
			n, _ := strconv.Atoi(s[i+1:])
			return n
		}
	}
	return -1
}
