package runtime_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("ReloadOnSignal: an embedding program's SIGHUP reloads its pools", Label("python"), func() {
	It("reloads every pool on SIGHUP, logs each result, and hands the signal back when stopped", func() {
		dirs := map[string]string{"default": toolsDir(), "other": toolsDir()}
		cfg := upgradePool(dirs["default"], 1)
		cfg.Pools = append(cfg.Pools, pyvisor.PoolConfig{Name: "other", Tools: []string{"upgrade_tools"}, Dir: dirs["other"], Workers: 1})
		rt, logs := start(cfg)
		answer := func(pool string) func() string {
			return func() string {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				v, _ := pyvisor.Call[string](ctx, rt, pool, "version", nil)
				return v
			}
		}

		stop := rt.ReloadOnSignal(context.Background())
		DeferCleanup(stop) // a failed spec must not leave SIGHUP taken
		for _, dir := range dirs {
			rewrite(dir, upgradeTools("v2-hup", "", "pass"))
		}
		Expect(syscall.Kill(os.Getpid(), syscall.SIGHUP)).To(Succeed())
		for pool := range dirs {
			Eventually(answer(pool)).WithTimeout(30*time.Second).Should(Equal("v2-hup"), pool)
		}
		Eventually(func() []map[string]any { return logs.Matching(reloadedLine) }).WithTimeout(10 * time.Second).Should(ConsistOf(
			And(HaveKeyWithValue("pool", "default"), HaveKeyWithValue("trigger", "signal hangup")),
			And(HaveKeyWithValue("pool", "other"), HaveKeyWithValue("trigger", "signal hangup")),
		))

		stop()
		// SIGHUP is the program's again: a channel of the spec's own gets it (without one
		// it would end the process), and no pool reloads.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		rewrite(dirs["default"], upgradeTools("v3", "", "pass"))
		Expect(syscall.Kill(os.Getpid(), syscall.SIGHUP)).To(Succeed())
		Eventually(hup).WithTimeout(5 * time.Second).Should(Receive())
		Consistently(func() []map[string]any { return logs.Matching(upgradeStarted) }).WithTimeout(time.Second).Should(HaveLen(2))
		Expect(answer("default")()).To(Equal("v2-hup"))
	})
})
