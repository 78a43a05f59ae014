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
		Expect(startErr.Hint).To(ContainSubstring("PoolConfig.Dir"))
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
