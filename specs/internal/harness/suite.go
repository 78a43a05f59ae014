package harness

import (
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
)

// Suite prepares a suite whose specs start runtimes with real Python workers: suite-wide
// Eventually timeouts suited to starting Python, the interpreter (checked), and a private
// directory set as $TMPDIR for the suite, where the workers' socket directories go.
// Call it from BeforeSuite; everything is undone after the suite.
func Suite(prefix string) (python, runtimeDir string) {
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(25 * time.Millisecond)
	python = Python()
	runtimeDir, remove := TempDir(prefix)
	DeferCleanup(remove)
	old := os.Getenv("TMPDIR")
	Expect(os.Setenv("TMPDIR", runtimeDir)).To(Succeed())
	DeferCleanup(os.Setenv, "TMPDIR", old)
	return python, runtimeDir
}

// CheckLeaks, called from BeforeEach, fails the spec if it leaves a goroutine, a child
// process or a socket directory in runtimeDir behind. Registered first, it runs last,
// after the spec's own cleanups.
func CheckLeaks(runtimeDir string) {
	DeferCleanup(Take(runtimeDir).Check)
}

// CheckClusterLeaks is CheckLeaks for specs whose runtimes join a cluster. It lets two
// goroutines of protoactor-go's be, which pyvisor cannot end:
//   - its log throttles: each ends one throttle period (60 s for the gossip's) after the
//     first line it throttled, whether the node stopped or not;
//   - the etcd provider's role-change loop, parked for good on a channel its Shutdown
//     never closes: one goroutine per etcd node started (docs/cluster.md says so).
func CheckClusterLeaks(runtimeDir string) {
	s := Take(runtimeDir)
	s.ignoring = []any{
		gleak.IgnoringInBacktrace(".NewThrottle"),
		gleak.IgnoringTopFunction("github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd.(*Provider).startRoleChangedNotifyLoop.func1"),
	}
	DeferCleanup(s.Check)
}
