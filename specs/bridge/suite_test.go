package bridge_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

func TestBridge(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Bridge: one Python worker process")
}

var (
	python     string // the interpreter every spec's worker runs
	runtimeDir string // where workers keep their socket directories; empty after each spec
)

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(10 * time.Second)
	SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	python = harness.Python()
	var remove func() error
	runtimeDir, remove = harness.TempDir("pvspec-")
	DeferCleanup(remove)
})

var _ = BeforeEach(func() { harness.CheckLeaks(runtimeDir) })

// worker starts an example-tools worker for one spec, stops it after, and returns it
// with its captured log lines.
func worker(opts ...bridge.Option) (*bridge.Process, *harness.Logs) {
	GinkgoHelper()
	logs := &harness.Logs{}
	base := []bridge.Option{
		bridge.WithPython(python),
		bridge.WithTools("pyvisor_worker.examples"),
		bridge.WithWorkerID("spec-0"),
		bridge.WithRuntimeDir(runtimeDir),
		bridge.WithLogger(zerolog.New(logs)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := bridge.Start(ctx, append(base, opts...)...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		Expect(p.Stop(ctx)).To(Succeed())
	})
	return p, logs
}

// call runs one tool with a spec-sized deadline.
func call(p *bridge.Process, tool string, args any) (bridge.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Client().Execute(ctx, bridge.Request{Tool: tool, Args: args})
}

// decoded is the JSON result of a call that must succeed.
func decoded(p *bridge.Process, tool string, args any) any {
	GinkgoHelper()
	res, err := call(p, tool, args)
	Expect(err).NotTo(HaveOccurred())
	var v any
	Expect(res.Decode(&v)).To(Succeed())
	return v
}

// stillServes is the check, after a failure, that the same worker answers again.
func stillServes(p *bridge.Process) {
	GinkgoHelper()
	Expect(decoded(p, "add", map[string]int{"a": 2, "b": 3})).To(BeNumerically("==", 5))
}
