package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

func watching(p *pyvisor.PoolConfig) { p.Upgrade.Watch = true }

// Lines the runtime and its pools log about a reload.
const (
	reloadedLine   = "reloaded: the pool runs the tool code on disk"
	rolledBackLine = "reload rolled back: the old code serves on"
	upgradeDone    = "upgrade done: every worker runs the new code"
	upgradeStarted = "upgrade started"
)

// answers is what the pool's version tool returns now ("" for a failed call).
func answers(rt *pyvisor.Runtime) func() string {
	return func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		v, _ := pyvisor.Call[string](ctx, rt, "default", "version", nil)
		return v
	}
}

// inotifyFDs counts this process's open inotify descriptors: one per watching pool.
func inotifyFDs() int {
	n := 0
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

var _ = Describe("Development mode (upgrade.watch): a pool reloads itself when its tool code changes on disk", Label("python"), func() {
	It("reloads the pool once a tools module is rewritten, and logs the versions before and after", func() {
		dir := toolsDir()
		rt, logs := start(upgradePool(dir, 2, watching))
		before := versions(rt)
		rewrite(dir, upgradeTools("v2-edited", "", "pass")) // another size: Python's bytecode cache cannot take it for v1

		Eventually(answers(rt)).WithTimeout(30 * time.Second).Should(Equal("v2-edited"))
		Eventually(func() []map[string]any { return logs.Matching(reloadedLine) }).WithTimeout(30 * time.Second).Should(HaveLen(1))
		after := versions(rt)
		Expect(after[0]).NotTo(Equal(before[0]))
		Expect(after).To(HaveEach(after[0]), "every worker runs the new code")
		Expect(logs.Matching(reloadedLine)[0]).To(And(
			HaveKeyWithValue("pool", "default"),
			HaveKeyWithValue("trigger", "development mode"),
			HaveKeyWithValue("version_before", before[0]),
			HaveKeyWithValue("version_after", after[0]),
		))
	})

	It("reloads once for a burst of quick writes, on the last one", func() {
		dir := toolsDir()
		rt, logs := start(upgradePool(dir, 2, watching))
		for _, v := range []string{"v2", "v3", "v4-last"} { // an editor's saves, a checkout
			rewrite(dir, upgradeTools(v, "", "pass"))
			time.Sleep(50 * time.Millisecond)
		}
		Eventually(answers(rt)).WithTimeout(30 * time.Second).Should(Equal("v4-last"))
		Consistently(func() int { return len(logs.Matching(upgradeStarted)) }).WithTimeout(time.Second).Should(Equal(1))
		Expect(logs.Matching(upgradeDone)).To(HaveLen(1))
		Expect(logs.Matching(reloadedLine)).To(HaveLen(1))
	})

	It("rolls a broken write back, logs why, and serves the old code until the code is fixed", func() {
		dir := toolsDir()
		rt, logs := start(upgradePool(dir, 2, watching))
		before := versions(rt)
		l := startLoad(rt, 4, "pause", map[string]int{"ms": 5})
		rewrite(dir, upgradeTools("v2", "def broken(:", "pass"))

		Eventually(func() []map[string]any { return logs.Matching(rolledBackLine) }).WithTimeout(30 * time.Second).Should(HaveLen(1))
		l.end()
		Expect(logs.Matching(rolledBackLine)[0]).To(And(
			HaveKeyWithValue("pool", "default"),
			HaveKeyWithValue("version", before[0]),
			HaveKeyWithValue("error", And(ContainSubstring("upgrade rolled back"), ContainSubstring("SyntaxError"))),
		))
		Expect(l.errs).To(BeEmpty(), "no call fails because of the broken write")
		Expect(l.versions).To(HaveEach("v1"), "the old code served throughout")
		Expect(versions(rt)).To(Equal(before))
		Expect(callVersion(rt)).To(Equal("v1"))

		rewrite(dir, upgradeTools("v2", "", "pass")) // the fix
		Eventually(answers(rt)).WithTimeout(30 * time.Second).Should(Equal("v2"))
	})

	It("waits for a Reload under way, then reloads the code on disk", func() {
		dir := toolsDir()
		rt, logs := start(upgradePool(dir, 1, watching))
		rewrite(dir, upgradeTools("v2-slow", "time.sleep(2)  # a model's load", "pass"))
		Expect(reload(rt)).To(Succeed(), "the deploy's Reload, which development mode does not disturb")
		Eventually(func() []map[string]any { return logs.Matching(reloadedLine) }).WithTimeout(30 * time.Second).Should(HaveLen(1))
		Expect(logs.Matching(upgradeDone)).To(HaveLen(2), "the deploy's, then development mode's")
		Expect(logs.Matching("reload refused: another reload of the pool runs")).To(BeEmpty())
		Expect(callVersion(rt)).To(Equal("v2-slow"))
	})

	It("stops watching when the runtime stops, leaving no goroutine or inotify descriptor behind", func() {
		fds := inotifyFDs()
		dir := toolsDir()
		logs := &harness.Logs{}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rt, err := pyvisor.Start(ctx, upgradePool(dir, 1, watching), pyvisor.WithLogger(zerolog.New(logs)))
		Expect(err).NotTo(HaveOccurred())
		Expect(inotifyFDs()).To(Equal(fds+1), "the pool's watch")
		Expect(rt.Stop(ctx)).To(Succeed())
		Expect(inotifyFDs()).To(Equal(fds))

		rewrite(dir, upgradeTools("v2", "", "pass"))
		Consistently(func() []map[string]any { return logs.Matching(upgradeStarted) }).WithTimeout(time.Second).Should(BeEmpty())
		// The goroutines: the suite's leak check after every spec.
	})

	It("watches only the pools that ask for it", func() {
		dir := toolsDir()
		fds := inotifyFDs()
		rt, logs := start(upgradePool(dir, 1))
		Expect(inotifyFDs()).To(Equal(fds))
		rewrite(dir, upgradeTools("v2", "", "pass"))
		Consistently(func() []map[string]any { return logs.Matching(upgradeStarted) }).WithTimeout(time.Second).Should(BeEmpty())
		Expect(callVersion(rt)).To(Equal("v1"))
	})
})
