package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/bridge"
)

var modelTools, _ = filepath.Abs("../bridge/testdata/tools")

var _ = Describe("A pool whose tools take long to import, as a model's load does", Label("python"), func() {
	It("starts once they are loaded, however short the handshake timeout", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) {
			p.Tools = []string{"model_import"}
			p.Env = map[string]string{"PYTHONPATH": modelTools}
			p.HandshakeTimeout = time.Second // the import takes 2.5 s
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := pyvisor.Call[float64](ctx, rt, "default", "predict", map[string]float64{"x": 21})
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(42.0))
	})

	It("starts one whose import outlasts gRPC's 30 s wait for a call the server has not taken up", Label("slow"), func() {
		began := time.Now()
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) {
			p.Tools = []string{"long_import"}
			p.Env = map[string]string{"PYTHONPATH": modelTools}
		}))
		Expect(time.Since(began)).To(BeNumerically(">", 32*time.Second))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		Expect(pyvisor.Call[bool](ctx, rt, "default", "ready", nil)).To(BeTrue(), "its channel survived the load")
	})

	It("fails Start past its load timeout, saying which setting to raise", func() {
		cfg := pool(1, func(p *pyvisor.PoolConfig) {
			p.Tools = []string{"model_import"}
			p.Env = map[string]string{"PYTHONPATH": modelTools}
			p.LoadTimeout = 500 * time.Millisecond
			p.Restart.MaxRestarts = 0
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := pyvisor.Start(ctx, cfg)
		Expect(err).To(MatchError(pyvisor.ErrLoadTimeout))
		var startErr *bridge.StartError
		Expect(errors.As(err, &startErr)).To(BeTrue())
		Expect(startErr.Hint).To(ContainSubstring("PoolConfig.LoadTimeout"))
		Expect(startErr.Stderr).To(ContainSubstring("loading the model"))
	})
})

var _ = Describe("A worker loading its tools", Label("python"), func() {
	It("shows as loading, with its pid, in Stats until it is ready", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) {
			p.Tools = []string{"model_import"}
			p.Env = map[string]string{"PYTHONPATH": modelTools}
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		go func() { _ = rt.Resize(ctx, "default", 2) }() // a second worker, 2.5 s of import
		state := func() string {
			if w := stats(rt).Workers; len(w) == 2 {
				return w[1].State
			}
			return ""
		}
		Eventually(state).WithTimeout(10 * time.Second).Should(Equal("loading"))
		Expect(stats(rt).Workers[1].PID).NotTo(BeZero())
		Eventually(state).WithTimeout(15 * time.Second).Should(Equal("ready"))
	})
})

var _ = Describe("A tools module that cannot import", Label("python"), func() {
	It("fails Start at once with the traceback and a hint in pyvisor terms, trying once", func() {
		var logs syncBuffer
		cfg := pool(2, func(p *pyvisor.PoolConfig) {
			p.Tools = []string{"broken_import"}
			p.Env = map[string]string{"PYTHONPATH": modelTools}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err := pyvisor.Start(ctx, cfg, pyvisor.WithLogger(zerolog.New(&logs)))
		Expect(err).To(MatchError(pyvisor.ErrPoolFailed))
		Expect(err).To(MatchError(pyvisor.ErrExitedWhileLoading))
		var startErr *bridge.StartError
		Expect(errors.As(err, &startErr)).To(BeTrue())
		Expect(startErr.Stderr).To(ContainSubstring("no_such_dependency_xyz"))
		Expect(startErr.Hint).To(ContainSubstring("the pool's requirements"))
		Expect(startErr.Error()).NotTo(ContainSubstring("nonhost"))
		var restarts []string
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "worker failed; its supervisor restarts it") {
				restarts = append(restarts, line)
			}
		}
		Expect(restarts).To(BeEmpty(), "not retried")
	})
})

// syncBuffer is a bytes.Buffer safe for the runtime's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ = Describe("A Start whose context ends while a pool loads", Label("python"), func() {
	It("says which pool was still loading and what to change", func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second) // the import takes 2.5 s
		defer cancel()
		_, err := pyvisor.Start(ctx, pool(1, func(p *pyvisor.PoolConfig) {
			p.Tools = []string{"model_import"}
			p.Dir = modelTools
		}))
		Expect(err).To(MatchError(context.DeadlineExceeded))
		Expect(err.Error()).To(And(
			ContainSubstring("pool default: starting, workers 0 ready, 1 loading their tools"),
			ContainSubstring("give Start a longer context"),
		))
	})
})

var _ = Describe("A pool that cannot start", Label("python"), func() {
	// startFailure starts a one-pool runtime that must fail, and returns its error and how
	// long Start took (reported, not asserted: the goal is within 5 s).
	startFailure := func(cfg pyvisor.Config) error {
		GinkgoHelper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		began := time.Now()
		rt, err := pyvisor.Start(ctx, cfg)
		if rt != nil {
			_ = rt.Stop(context.Background())
		}
		AddReportEntry("Start failed after", time.Since(began).Round(time.Millisecond).String())
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).NotTo(ContainSubstring("nonhost"), "no actor addresses")
		Expect(err.Error()).NotTo(ContainSubstring("bridge."), "no options a pyvisor.Start user does not have")
		return err
	}
	tools := func(module string) pyvisor.Config {
		return pool(2, func(p *pyvisor.PoolConfig) {
			p.Tools = []string{module}
			p.Dir = modelTools // the tools modules' folder, as a pool's dir
		})
	}
	file := func(name string) string { return filepath.Join(modelTools, name) }

	DescribeTable("fails Start at once, once, with its cause in the user's terms",
		func(cfg pyvisor.Config, sentinel error, want ...string) {
			err := startFailure(cfg)
			Expect(err).To(MatchError(sentinel))
			for _, w := range want {
				Expect(err.Error()).To(ContainSubstring(w))
			}
		},
		Entry("a tools module name that does not exist", tools("no_such_tools"), pyvisor.ErrExitedWhileLoading,
			`the tools module "no_such_tools" was not found`, "pool's dir", "No module named 'no_such_tools'"),
		Entry("a package the tools import that is not installed", tools("broken_import"), pyvisor.ErrExitedWhileLoading,
			`package "no_such_dependency_xyz"`, "is not installed in", "requirements",
			`File "`+file("broken_import.py")+`", line 3`),
		Entry("a syntax error", tools("syntax_error"), pyvisor.ErrExitedWhileLoading,
			"syntax_error has a syntax error", `File "`+file("syntax_error.py")+`", line 7`, "SyntaxError"),
		Entry("a tool parameter the schema cannot take", tools("bad_annotation"), pyvisor.ErrExitedWhileLoading,
			"parameter the schema cannot take", `File "`+file("bad_annotation.py")+`", line 10`, "unsupported parameter annotation"),
		Entry("an exception at import", tools("raises_at_import"), pyvisor.ErrExitedWhileLoading,
			"raises_at_import raised at import", `File "`+file("raises_at_import.py")+`", line 3`, "/no/such/model.bin"),
		Entry("an interpreter that does not exist", func() pyvisor.Config {
			cfg := pool(1)
			cfg.Python = "/no/such/python3"
			return cfg
		}(), pyvisor.ErrInterpreterNotFound, `cannot run "/no/such/python3"`, bridge.SetupCommand),
		Entry("an interpreter without the worker package", func() pyvisor.Config {
			cfg := pool(1)
			cfg.Python = "python3" // the system's, outside the project's venv
			return cfg
		}(), pyvisor.ErrExitedBeforeHandshake, "does not have the worker package", bridge.SetupCommand),
		Entry("tools that load longer than the load timeout", pool(1, func(p *pyvisor.PoolConfig) {
			p.Tools = []string{"model_import"}
			p.Dir = modelTools
			p.LoadTimeout = 500 * time.Millisecond
		}), pyvisor.ErrLoadTimeout, "raise the pool's load_timeout", "loading the model"),
	)
})
