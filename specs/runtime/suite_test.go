package runtime_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

func TestRuntime(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Runtime: supervised pools of Python workers")
}

var (
	python     string
	runtimeDir string // $TMPDIR of the suite: the workers' socket directories go here
)

var _ = BeforeSuite(func() { python, runtimeDir = harness.Suite("pvrt-") })

var _ = BeforeEach(func() { harness.CheckLeaks(runtimeDir) })

// pool is a one-pool configuration of the example tools.
func pool(workers int, tweak ...func(*pyvisor.PoolConfig)) pyvisor.Config {
	pc := pyvisor.PoolConfig{Name: "default", Tools: []string{"pyvisor_worker.examples"}, Workers: workers}
	for _, t := range tweak {
		t(&pc)
	}
	return pyvisor.Config{Python: python, Pools: []pyvisor.PoolConfig{pc}}
}

// start starts a runtime for one spec and stops it after; it returns the runtime and
// its captured log lines.
func start(cfg pyvisor.Config, opts ...pyvisor.Option) (*pyvisor.Runtime, *harness.Logs) {
	GinkgoHelper()
	logs := &harness.Logs{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rt, err := pyvisor.Start(ctx, cfg, append(opts, pyvisor.WithLogger(zerolog.New(logs)))...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		Expect(rt.Stop(ctx)).To(Succeed())
	})
	return rt, logs
}

func execute(rt *pyvisor.Runtime, tool string, args any, opts ...pyvisor.CallOption) (pyvisor.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return rt.Execute(ctx, "default", tool, args, opts...)
}

// stats is the snapshot of the spec's one pool.
func stats(rt *pyvisor.Runtime) pyvisor.PoolStats {
	GinkgoHelper()
	st, err := rt.Stats(context.Background())
	Expect(err).NotTo(HaveOccurred())
	Expect(st).To(HaveLen(1))
	return st[0]
}

// readyPIDs lists the Python pids of the ready workers, by slot.
func readyPIDs(rt *pyvisor.Runtime) map[string]int {
	out := map[string]int{}
	st, err := rt.Stats(context.Background())
	if err != nil || len(st) != 1 {
		return out
	}
	for _, w := range st[0].Workers {
		if w.State == "ready" {
			out[w.ID] = w.PID
		}
	}
	return out
}

// whoami is the pid of the Python process that ran one call.
func whoami(rt *pyvisor.Runtime, opts ...pyvisor.CallOption) int {
	GinkgoHelper()
	res, err := execute(rt, "whoami", nil, opts...)
	Expect(err).NotTo(HaveOccurred())
	var who struct{ PID int }
	Expect(res.Decode(&who)).To(Succeed())
	return who.PID
}

// inFlight counts the calls running on the pool's workers.
func inFlight(rt *pyvisor.Runtime) int {
	n := 0
	for _, w := range stats(rt).Workers {
		n += w.InFlight
	}
	return n
}

// survivingWorker starts a one-worker pool before each spec of its container and checks
// after it that the same Python process still serves, never restarted; it returns the
// current spec's runtime.
func survivingWorker() func() *pyvisor.Runtime {
	var rt *pyvisor.Runtime
	var pid int
	BeforeEach(func() {
		rt, _ = start(pool(1))
		pid = readyPIDs(rt)["default-0"]
	})
	AfterEach(func() {
		Expect(readyPIDs(rt)).To(HaveKeyWithValue("default-0", pid), "the same process still serves: nothing restarted it")
		Expect(stats(rt).Restarts).To(BeEmpty())
		Expect(execute(rt, "add", map[string]int{"a": 1, "b": 2})).To(HaveField("JSON", BeEquivalentTo("3")))
	})
	return func() *pyvisor.Runtime { return rt }
}
