package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

// startFailing starts a worker that is expected not to come up.
func startFailing(opts ...bridge.Option) *bridge.StartError {
	GinkgoHelper()
	base := []bridge.Option{bridge.WithPython(python), bridge.WithTools("pyvisor_worker.examples"),
		bridge.WithRuntimeDir(runtimeDir), bridge.WithWorkerID("doomed")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := bridge.Start(ctx, append(base, opts...)...)
	if p != nil { // not formatted: a Process holds its arenas' mappings, gigabytes of them
		_ = p.Kill(context.Background())
		Fail("the worker started")
	}
	var startErr *bridge.StartError
	Expect(err).To(BeAssignableToTypeOf(startErr))
	return err.(*bridge.StartError)
}

// wrapper writes an executable script standing in for the interpreter.
func wrapper(body string) string {
	GinkgoHelper()
	path := filepath.Join(GinkgoT().TempDir(), "python-wrapper")
	Expect(os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755)).To(Succeed())
	return path
}

var testdataTools, _ = filepath.Abs("testdata/tools")

var _ = Describe("A worker that will not start", Label("python"), func() {
	It("says when the interpreter cannot be found, and how to fix it", func() {
		err := startFailing(bridge.WithPython("/nonexistent/python3"))
		Expect(err).To(MatchError(bridge.ErrInterpreterNotFound))
		Expect(err.Error()).To(ContainSubstring("PYVISOR_PYTHON"))
	})

	It("says when a tools module cannot be imported, with the Python traceback cut to the user's frames", func() {
		err := startFailing(bridge.WithTools("broken_import"), bridge.WithEnv("PYTHONPATH", testdataTools))
		Expect(err).To(MatchError(bridge.ErrExitedWhileLoading))
		Expect(err.Exit).To(Equal("exited with status 3"))
		Expect(err.Stderr).To(ContainSubstring(`File "` + filepath.Join(testdataTools, "broken_import.py") + `", line 3`))
		Expect(err.Stderr).To(ContainSubstring("ModuleNotFoundError: No module named 'no_such_dependency_xyz'"))
		Expect(err.Stderr).NotTo(ContainSubstring("importlib"), "the import system's frames are not the user's")
		Expect(err.Hint).To(ContainSubstring(`package "no_such_dependency_xyz"`))
	})

	It("says when a tools module is not where the worker looks, naming the folder settings", func() {
		err := startFailing(bridge.WithTools("broken_import")) // its folder is not on the path
		Expect(err).To(MatchError(bridge.ErrExitedWhileLoading))
		Expect(err.Hint).To(ContainSubstring(`the tools module "broken_import" was not found`))
		Expect(err.Hint).To(ContainSubstring("PYTHONPATH"))
	})

	It("says when the interpreter lacks the worker package", func() {
		err := startFailing(bridge.WithPython(wrapper(`exec python3 -I "$@"`)))
		Expect(err).To(MatchError(bridge.ErrExitedBeforeHandshake))
		Expect(err.Stderr).To(ContainSubstring("No module named"))
		Expect(err.Hint).To(ContainSubstring("`go run github.com/pyvisor/pyvisor/cmd/pyvisor setup`"), "the hint names the command that fixes it")
	})

	It("rejects a garbled handshake line, quoting it, with stderr attached", func() {
		err := startFailing(bridge.WithPython(wrapper(`echo "sourcing profile" >&2; echo "Welcome to the cluster shell"; exec "` + python + `" "$@"`)))
		Expect(err).To(MatchError(bridge.ErrHandshake))
		Expect(err.Error()).To(ContainSubstring(`"Welcome to the cluster shell"`))
		Expect(err.Stderr).To(ContainSubstring("sourcing profile"))
		Expect(err.Hint).To(ContainSubstring("stdout"))
	})

	It("gives up after the handshake timeout, kills the worker and shows its stderr", func() {
		start := time.Now()
		err := startFailing(bridge.WithPython(wrapper(`echo "waiting for a slow disk" >&2; sleep 30; exec "`+python+`" "$@"`)),
			bridge.WithHandshakeTimeout(1500*time.Millisecond))
		Expect(time.Since(start)).To(BeNumerically("<", 1500*time.Millisecond+2*margin))
		Expect(err).To(MatchError(bridge.ErrHandshakeTimeout))
		Expect(err.Exit).To(Equal("still running; killed"))
		Expect(err.Stderr).To(ContainSubstring("waiting for a slow disk"))
		Expect(err.Hint).To(ContainSubstring("handshake_timeout"))
	})

	It("gives up loading its tools after the load timeout, kills the worker and shows its stderr", func() {
		start := time.Now()
		err := startFailing(bridge.WithTools("slow_import"), bridge.WithEnv("PYTHONPATH", testdataTools),
			bridge.WithLoadTimeout(1500*time.Millisecond))
		Expect(time.Since(start)).To(BeNumerically("<", 1500*time.Millisecond+2*margin))
		Expect(err).To(MatchError(bridge.ErrLoadTimeout))
		Expect(err.Exit).To(Equal("still running; killed"))
		Expect(err.Stderr).To(ContainSubstring("loading a very large model"))
		Expect(err.Hint).To(ContainSubstring("PoolConfig.LoadTimeout"))
	})
})

var _ = Describe("A worker whose tools take long to import", Label("python"), func() {
	It("hands over at once and loads them after, however short the handshake timeout, saying it is loading", func() {
		var loading atomic.Int64
		p, _ := worker(bridge.WithTools("model_import"), bridge.WithEnv("PYTHONPATH", testdataTools),
			bridge.WithHandshakeTimeout(time.Second), bridge.WithLoading(func(pid int) { loading.Store(int64(pid)) }))
		Expect(loading.Load()).To(Equal(int64(p.PID())), "told which process was loading")
		Expect(decoded(p, "predict", map[string]float64{"x": 21})).To(Equal(42.0))
	})
})

var _ = Describe("When the Go host dies", Label("python", "slow"), func() {
	It("its Python worker exits within 2 seconds, removes its socket, and takes the processes its tools started with it", func() {
		hostBin, err := gexec.Build("github.com/pyvisor/pyvisor/specs/bridge/testdata/host")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)

		host := exec.Command(hostBin, runtimeDir)
		host.Env = append(os.Environ(), "PYVISOR_PYTHON="+python)
		host.Stderr = GinkgoWriter
		stdout, err := host.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		Expect(host.Start()).To(Succeed())

		var workerPID, child, session, orphan int
		var socket string
		line, err := bufio.NewReader(stdout).ReadString('\n')
		Expect(err).NotTo(HaveOccurred())
		_, err = fmt.Sscanf(line, "%d %s %d %d %d", &workerPID, &socket, &child, &session, &orphan)
		Expect(err).NotTo(HaveOccurred())
		Expect(harness.Alive(workerPID)).To(BeTrue())
		tools := []int{child, session, orphan}
		for _, pid := range tools {
			Expect(harness.Alive(pid)).To(BeTrue())
		}

		Expect(host.Process.Signal(syscall.SIGKILL)).To(Succeed())
		_ = host.Wait()
		Eventually(func() bool { return harness.Alive(workerPID) }).WithTimeout(2 * time.Second).Should(BeFalse())
		Eventually(socket).WithTimeout(2 * time.Second).ShouldNot(BeAnExistingFile())
		Eventually(func() []int {
			var alive []int
			for _, pid := range tools {
				if harness.Alive(pid) {
					alive = append(alive, pid)
				}
			}
			return alive
		}).WithTimeout(2*time.Second).Should(BeEmpty(), "a child, one in a session of its own, an orphaned grandchild")
	})
})
