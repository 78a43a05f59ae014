package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

// upgradeTools is a tools module whose every tool answers with its code's version; import
// runs at its import (a model's load, or a syntax error), warm is the warm-up tool.
func upgradeTools(version, atImport, warm string) string {
	return `import time
from pyvisor_worker import ToolContext, on_upgrade, tool

VERSION = "` + version + `"
` + atImport + `

@tool
def version() -> str:
    return VERSION


@tool
def pause(ms: int) -> str:
    time.sleep(ms / 1000)
    return VERSION


@tool
def stubborn(seconds: float) -> str:
    """Ignores cancellation: a body the drain must stop."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(0.05)
        except BaseException:
            pass
    return VERSION


@tool
def tally(ctx: ToolContext) -> dict:
    """Counts a session's calls, and says which code answered."""
    ctx.session["count"] = ctx.session.get("count", 0) + 1
    return {"version": VERSION, "count": ctx.session["count"], "migrated_from": ctx.session.get("from", "")}


@tool
def warm() -> str:
    ` + warm + `
    return VERSION
`
}

// toolsDir is a fresh folder with the upgrade tools of version v1.
func toolsDir() string {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	rewrite(dir, upgradeTools("v1", "", "pass"))
	return dir
}

// rewrite puts new code on disk, as a deploy does. Its mtime moves on by seconds: Python's
// cached bytecode is keyed by the source's mtime (in seconds) and size.
func rewrite(dir, code string) {
	GinkgoHelper()
	path := filepath.Join(dir, "upgrade_tools.py")
	Expect(os.WriteFile(path, []byte(code), 0o644)).To(Succeed())
	later := time.Now().Add(time.Duration(len(code)%7+2) * time.Second)
	Expect(os.Chtimes(path, later, later)).To(Succeed())
}

func upgradePool(dir string, workers int, tweak ...func(*pyvisor.PoolConfig)) pyvisor.Config {
	return pool(workers, append([]func(*pyvisor.PoolConfig){func(p *pyvisor.PoolConfig) {
		p.Tools = []string{"upgrade_tools"}
		p.Dir = dir
	}}, tweak...)...)
}

// load runs callers making back-to-back calls of tool until stop is closed, and returns
// how many calls failed (each error kept), the versions answered in order of completion,
// and their latencies.
type load struct {
	mu        sync.Mutex
	errs      []error
	versions  []string
	latencies []time.Duration
	calls     atomic.Int64
	stop      chan struct{}
	done      sync.WaitGroup
}

func startLoad(rt *pyvisor.Runtime, callers int, tool string, args any) *load {
	l := &load{stop: make(chan struct{})}
	for range callers {
		l.done.Add(1)
		go func() {
			defer GinkgoRecover()
			defer l.done.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				began := time.Now()
				v, err := pyvisor.Call[string](ctx, rt, "default", tool, args)
				took := time.Since(began)
				cancel()
				l.calls.Add(1)
				l.mu.Lock()
				if err != nil {
					l.errs = append(l.errs, err)
				} else {
					l.versions = append(l.versions, v)
					l.latencies = append(l.latencies, took)
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) end() {
	close(l.stop)
	l.done.Wait()
}

// p99 of the latencies from index from on.
func (l *load) p99(from int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	lat := slices.Clone(l.latencies[from:])
	slices.Sort(lat)
	if len(lat) == 0 {
		return 0
	}
	return lat[len(lat)*99/100]
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.latencies)
}

func versions(rt *pyvisor.Runtime) []string {
	GinkgoHelper()
	var out []string
	for _, w := range stats(rt).Workers {
		out = append(out, w.Version)
	}
	return out
}

func callVersion(rt *pyvisor.Runtime) string {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	v, err := pyvisor.Call[string](ctx, rt, "default", "version", nil)
	Expect(err).NotTo(HaveOccurred())
	return v
}

func reload(rt *pyvisor.Runtime) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return rt.Reload(ctx, "default")
}

var _ = Describe("Reload: new tool code rolled through a running pool", Label("python"), func() {
	It("moves a pool under load to the new code with no failed call", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 4))
		before := versions(rt)
		Expect(slices.Compact(slices.Clone(before))).To(HaveLen(1), "one version before")
		Expect(before[0]).To(HaveLen(12), "the hash of the tools' code")

		l := startLoad(rt, 8, "pause", map[string]int{"ms": 5})
		time.Sleep(time.Second)
		steady := l.count()
		rewrite(dir, upgradeTools("v2", "", "pass"))
		began := time.Now()
		Expect(reload(rt)).To(Succeed())
		upgradeTook := time.Since(began)
		time.Sleep(500 * time.Millisecond)
		l.end()

		Expect(l.errs).To(BeEmpty(), "no call fails during the upgrade")
		for range 20 {
			Expect(callVersion(rt)).To(Equal("v2"), "every call after Reload runs the new code")
		}
		after := versions(rt)
		Expect(slices.Compact(slices.Clone(after))).To(HaveLen(1))
		Expect(after[0]).NotTo(Equal(before[0]))
		Expect(stats(rt).Upgrading).To(BeFalse())
		l.mu.Lock()
		steadyLat := slices.Clone(l.latencies[:steady])
		l.mu.Unlock()
		slices.Sort(steadyLat)
		ratio := float64(l.p99(steady)) / float64(steadyLat[len(steadyLat)*99/100])
		AddReportEntry("upgrade under load", map[string]any{
			"calls": l.calls.Load(), "failed": len(l.errs), "upgrade took": upgradeTook.String(),
			"p99 during+after / steady p99": ratio,
		})
	})

	It("labels the new code with the version ReloadAs gives, in Stats and on the call's span", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 2))
		rewrite(dir, upgradeTools("v2", "", "pass"))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		Expect(rt.ReloadAs(ctx, "default", "release-2")).To(Succeed())
		Expect(versions(rt)).To(Equal([]string{"release-2", "release-2"}))
		Expect(callVersion(rt)).To(Equal("v2"))
	})

	It("reloads a pool again and again, a rollback between, and its restarted workers start the latest code", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 2))
		for _, v := range []string{"v2", "v3"} {
			rewrite(dir, upgradeTools(v, "", "pass"))
			Expect(reload(rt)).To(Succeed(), "the reload to %s", v)
			Expect(callVersion(rt)).To(Equal(v))
		}
		rewrite(dir, upgradeTools("v4", "def broken(:", "pass"))
		Expect(reload(rt)).To(MatchError(pyvisor.ErrRolledBack))
		Expect(callVersion(rt)).To(Equal("v3"))
		rewrite(dir, upgradeTools("v5", "", "pass"))
		Expect(reload(rt)).To(Succeed(), "a reload after a rollback")

		victim := stats(rt).Workers[0].PID
		Expect(syscall.Kill(victim, syscall.SIGKILL)).To(Succeed())
		Eventually(func() int { return stats(rt).Workers[0].PID }).WithTimeout(20 * time.Second).
			Should(And(Not(BeZero()), Not(Equal(victim))))
		for range 6 {
			Expect(callVersion(rt)).To(Equal("v5"), "a restarted worker starts the latest code")
		}
	})

	DescribeTable("rolls a broken version back: the cause is Reload's error, no call fails, the old code serves on",
		func(code string, want ...string) {
			dir := toolsDir()
			rt, _ := start(upgradePool(dir, 3, func(p *pyvisor.PoolConfig) { p.Upgrade.WarmUpTool = "warm" }))
			before := versions(rt)
			l := startLoad(rt, 6, "pause", map[string]int{"ms": 5})
			time.Sleep(300 * time.Millisecond)
			rewrite(dir, code)
			err := reload(rt)
			time.Sleep(300 * time.Millisecond)
			l.end()

			Expect(err).To(MatchError(pyvisor.ErrRolledBack))
			for _, w := range want {
				Expect(err.Error()).To(ContainSubstring(w))
			}
			Expect(l.errs).To(BeEmpty(), "no call fails because of a rejected version")
			Expect(slices.Compact(slices.Clone(l.versions))).To(Equal([]string{"v1"}), "only the old code answered")
			Expect(versions(rt)).To(Equal(before))
			Expect(callVersion(rt)).To(Equal("v1"))
		},
		Entry("a syntax error", upgradeTools("v2", "def broken(:", "pass"), "SyntaxError", "upgrade_tools.py"),
		Entry("an import error", upgradeTools("v2", "import no_such_package_xyz", "pass"), `package "no_such_package_xyz"`),
		Entry("a warm-up that raises", upgradeTools("v2", "", `raise RuntimeError("the model did not load")`), "warm-up call warm", "the model did not load"),
	)

	It("rolls back a version whose canary fails too many calls, and the other workers never run it", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 3, func(p *pyvisor.PoolConfig) {
			p.Upgrade.Canary = time.Second
			p.Upgrade.MaxFailureRatio = 0.1
		}))
		before := versions(rt)
		// v2 loads, warms up (no warm-up set) and answers version, but its pause raises.
		broken := strings.Replace(upgradeTools("v2", "", "pass"), "    time.sleep(ms / 1000)\n", "    raise RuntimeError('v2 is broken')\n", 1)
		Expect(broken).To(ContainSubstring("v2 is broken"))
		l := startLoad(rt, 6, "pause", map[string]int{"ms": 5})
		time.Sleep(300 * time.Millisecond)
		rewrite(dir, broken)
		err := reload(rt)
		time.Sleep(300 * time.Millisecond)
		l.end()

		Expect(err).To(MatchError(pyvisor.ErrRolledBack))
		Expect(err.Error()).To(MatchRegexp(`the canary default-0 failed \d+ of \d+ calls on the new code`))
		Expect(l.errs).NotTo(BeEmpty(), "the canary's calls failed")
		for _, e := range l.errs {
			Expect(e.Error()).To(ContainSubstring("v2 is broken"), "only the new code's calls failed")
		}
		Expect(versions(rt)).To(Equal(before))
		Expect(callVersion(rt)).To(Equal("v1"))
	})

	It("moves on after a canary whose calls succeed", func() {
		dir := toolsDir()
		rt, logs := start(upgradePool(dir, 2, func(p *pyvisor.PoolConfig) { p.Upgrade.Canary = 500 * time.Millisecond }))
		l := startLoad(rt, 4, "pause", map[string]int{"ms": 5})
		rewrite(dir, upgradeTools("v2", "", "pass"))
		Expect(reload(rt)).To(Succeed())
		l.end()
		Expect(l.errs).To(BeEmpty())
		Expect(logs.Matching("the canary passed: the other workers follow")).To(HaveLen(1))
		Expect(callVersion(rt)).To(Equal("v2"))
	})

	It("moves a strict session to the new code once, with its state through the @on_upgrade hook", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 2, func(p *pyvisor.PoolConfig) { p.Affinity = pyvisor.AffinityStrict }))
		before := versions(rt)[0]
		type tally struct {
			Version      string `json:"version"`
			Count        int    `json:"count"`
			MigratedFrom string `json:"migrated_from"`
		}
		var seen []tally
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				t, err := pyvisor.Call[tally](ctx, rt, "default", "tally", nil, pyvisor.WithSession("s1"))
				cancel()
				Expect(err).NotTo(HaveOccurred())
				seen = append(seen, t)
				time.Sleep(2 * time.Millisecond)
			}
		}()
		time.Sleep(300 * time.Millisecond)
		hook := "@on_upgrade\ndef migrate(state, old_version):\n    return {**state, \"from\": old_version}\n"
		rewrite(dir, upgradeTools("v2", hook, "pass"))
		Expect(reload(rt)).To(Succeed())
		time.Sleep(300 * time.Millisecond)
		close(stop)
		<-done

		switched := slices.IndexFunc(seen, func(t tally) bool { return t.Version == "v2" })
		Expect(switched).To(BeNumerically(">", 0), "the session ran on both versions: %v", seen)
		for i, t := range seen {
			Expect(t.Count).To(Equal(i+1), "its state survived the move: call %d", i)
			if i < switched {
				Expect(t.Version).To(Equal("v1"), "before the move, only the old code")
			} else {
				Expect(t.Version).To(Equal("v2"), "after the move, only the new code")
				Expect(t.MigratedFrom).To(Equal(before), "the hook ran, with the old version")
			}
		}
	})

	It("moves a pool to a new tools folder with Upgrade, under load, and its workers restart there after", func() {
		dir, next := toolsDir(), toolsDir()
		rewrite(next, upgradeTools("v2", "", "pass"))
		cfg := upgradePool(dir, 2)
		rt, _ := start(cfg)
		l := startLoad(rt, 4, "pause", map[string]int{"ms": 5})
		pc := cfg.Pools[0]
		pc.Dir = next
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		Expect(rt.Upgrade(ctx, pc)).To(Succeed())
		l.end()
		Expect(l.errs).To(BeEmpty())
		Expect(callVersion(rt)).To(Equal("v2"))

		victim := stats(rt).Workers[0].PID
		Expect(syscall.Kill(victim, syscall.SIGKILL)).To(Succeed())
		Eventually(func() int { return stats(rt).Workers[0].PID }).WithTimeout(20 * time.Second).
			Should(And(Not(BeZero()), Not(Equal(victim))))
		for range 6 {
			Expect(callVersion(rt)).To(Equal("v2"), "a restarted worker starts in the new folder")
		}
		Expect(rt.Resize(ctx, "default", 3)).To(Succeed())
		for range 6 {
			Expect(callVersion(rt)).To(Equal("v2"), "so does one a Resize adds")
		}
	})

	Describe("with a session deadline", func() {
		type tally struct {
			Version      string `json:"version"`
			Count        int    `json:"count"`
			MigratedFrom string `json:"migrated_from"`
		}
		call := func(rt *pyvisor.Runtime, session string) tally {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			t, err := pyvisor.Call[tally](ctx, rt, "default", "tally", nil, pyvisor.WithSession(session))
			Expect(err).NotTo(HaveOccurred())
			return t
		}
		hook := "@on_upgrade\ndef migrate(state, old_version):\n    return {**state, \"from\": old_version}\n"
		oldPID := func(rt *pyvisor.Runtime, current int) func() bool {
			return func() bool { return harness.Alive(current) }
		}

		It("keeps a session on its old code until the deadline, then moves it with its state", func() {
			dir := toolsDir()
			rt, _ := start(upgradePool(dir, 1, func(p *pyvisor.PoolConfig) {
				p.Affinity = pyvisor.AffinityStrict
				p.MaxConcurrent = 2
				p.Upgrade.SessionDeadline = 2 * time.Second
			}))
			before, old := versions(rt)[0], stats(rt).Workers[0].PID
			for i := 1; i <= 3; i++ {
				Expect(call(rt, "s1")).To(Equal(tally{Version: "v1", Count: i}))
			}
			rewrite(dir, upgradeTools("v2", hook, "pass"))
			Expect(reload(rt)).To(Succeed())
			Expect(call(rt, "s1")).To(Equal(tally{Version: "v1", Count: 4}), "the session stays on the code it started on")
			Expect(call(rt, "s2")).To(Equal(tally{Version: "v2", Count: 1}), "a new session starts on the new code")
			Expect(harness.Alive(old)).To(BeTrue(), "the old process serves the pinned session")

			Eventually(func() string { return call(rt, "s1").Version }).WithTimeout(10 * time.Second).Should(Equal("v2"))
			moved := call(rt, "s1")
			Expect(moved.Count).To(BeNumerically(">", 5), "its state moved with it")
			Expect(moved.MigratedFrom).To(Equal(before), "through the hook")
			Eventually(oldPID(rt, old)).WithTimeout(15*time.Second).Should(BeFalse(), "the old process goes once its sessions moved")
		})

		It("lets the old process go when its last pinned session ends, before the deadline", func() {
			dir := toolsDir()
			rt, _ := start(upgradePool(dir, 1, func(p *pyvisor.PoolConfig) {
				p.Affinity = pyvisor.AffinityStrict
				p.Upgrade.SessionDeadline = time.Minute
			}))
			old := stats(rt).Workers[0].PID
			Expect(call(rt, "s1").Count).To(Equal(1))
			rewrite(dir, upgradeTools("v2", "", "pass"))
			Expect(reload(rt)).To(Succeed())
			Expect(call(rt, "s1")).To(Equal(tally{Version: "v1", Count: 2}))
			rewrite(dir, upgradeTools("v3", "", "pass"))
			Expect(reload(rt)).To(MatchError(pyvisor.ErrUpgrading), "not while sessions still run on the code before last")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			Expect(rt.CloseSession(ctx, "default", "s1")).To(Succeed())
			Eventually(oldPID(rt, old)).WithTimeout(15 * time.Second).Should(BeFalse())
			Expect(reload(rt)).To(Succeed(), "once they closed")
			rewrite(dir, upgradeTools("v2", "", "pass"))
			Expect(reload(rt)).To(Succeed())
			Expect(call(rt, "s1")).To(Equal(tally{Version: "v2", Count: 1}), "the id starts a new session, on the new code")
			Expect(rt.CloseSession(ctx, "default", "nope")).To(MatchError(pyvisor.ErrUnknownSession))
		})
	})

	It("holds recycling while it runs, and catches up after, with no failed call", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 2, func(p *pyvisor.PoolConfig) { p.Recycle.MaxCalls = 20 }))
		l := startLoad(rt, 4, "pause", map[string]int{"ms": 5})
		rewrite(dir, upgradeTools("v2", "time.sleep(1)", "pass"))
		Expect(reload(rt)).To(Succeed(), "no recycle takes an upgrading slot's process from under it")
		Eventually(func() int { return stats(rt).Recycled["max_calls"] }).Should(BeNumerically(">", 0), "recycling goes on after it")
		l.end()
		Expect(l.errs).To(BeEmpty())
		Expect(callVersion(rt)).To(Equal("v2"), "a recycled worker starts on the new code")
	})

	It("upgrades max_surge workers at once, still with no failed call", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 4, func(p *pyvisor.PoolConfig) { p.Upgrade.MaxSurge = 4 }))
		l := startLoad(rt, 4, "pause", map[string]int{"ms": 5})
		rewrite(dir, upgradeTools("v2", "time.sleep(2)  # a model's load", "pass"))
		began := time.Now()
		Expect(reload(rt)).To(Succeed())
		took := time.Since(began)
		l.end()
		Expect(l.errs).To(BeEmpty())
		Expect(took).To(BeNumerically("<", 6*time.Second), "four 2 s loads side by side, not one after another (8 s)")
		Expect(slices.Compact(versions(rt))).To(HaveLen(1))
		Expect(callVersion(rt)).To(Equal("v2"))
	})

	It("keeps serving on the old code throughout while the new code's import takes long", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 2))
		l := startLoad(rt, 4, "pause", map[string]int{"ms": 5})
		rewrite(dir, upgradeTools("v2", "time.sleep(3)  # a model's load", "pass"))
		began := time.Now()
		Expect(reload(rt)).To(Succeed())
		took := time.Since(began)
		l.end()
		Expect(l.errs).To(BeEmpty())
		Expect(took).To(BeNumerically(">", 6*time.Second), "two workers, one at a time, 3 s each")
		Expect(l.count()).To(BeNumerically(">", 100), "calls were served while the new code loaded")
		Expect(callVersion(rt)).To(Equal("v2"))
	})

	It("refuses a second Reload and a Resize while one runs, with ErrUpgrading", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 2))
		rewrite(dir, upgradeTools("v2", "time.sleep(2)", "pass"))
		first := make(chan error, 1)
		go func() { first <- reload(rt) }()
		Eventually(func() bool { return stats(rt).Upgrading }).Should(BeTrue())
		Expect(reload(rt)).To(MatchError(pyvisor.ErrUpgrading))
		Expect(rt.Resize(context.Background(), "default", 3)).To(MatchError(pyvisor.ErrUpgrading))
		Eventually(first).WithTimeout(30 * time.Second).Should(Receive(Succeed()))
		Expect(rt.Resize(context.Background(), "default", 3)).To(Succeed(), "once Reload returned")
	})

	It("ends with ErrStopped when the runtime stops during it, and leaves nothing behind", func() {
		dir := toolsDir()
		cfg := upgradePool(dir, 2)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rt, err := pyvisor.Start(ctx, cfg)
		Expect(err).NotTo(HaveOccurred())
		rewrite(dir, upgradeTools("v2", "time.sleep(2)", "pass"))
		done := make(chan error, 1)
		go func() { done <- rt.Reload(ctx, "default") }()
		Eventually(func() bool { return stats(rt).Upgrading }).Should(BeTrue())
		Expect(rt.Stop(ctx)).To(Succeed())
		Eventually(done).WithTimeout(10 * time.Second).Should(Receive(MatchError(pyvisor.ErrStopped)))
	})

	It("stops an old worker whose call outlives the drain timeout, cancellation ignored", func() {
		dir := toolsDir()
		rt, _ := start(upgradePool(dir, 1, func(p *pyvisor.PoolConfig) {
			p.Upgrade.DrainTimeout = 500 * time.Millisecond
			p.StopTimeout = 500 * time.Millisecond
			p.MaxConcurrent = 2
		}))
		oldPID := stats(rt).Workers[0].PID
		stubborn := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err := pyvisor.Call[string](ctx, rt, "default", "stubborn", map[string]float64{"seconds": 30})
			stubborn <- err
		}()
		Eventually(func() int { return stats(rt).Workers[0].InFlight }).Should(Equal(1))
		rewrite(dir, upgradeTools("v2", "", "pass"))
		Expect(reload(rt)).To(Succeed(), "the upgrade does not wait for the old worker's calls")
		Expect(callVersion(rt)).To(Equal("v2"))
		var err error
		Eventually(stubborn).WithTimeout(15 * time.Second).Should(Receive(&err))
		Expect(err).To(MatchError(pyvisor.ErrStopped), "the call past the drain timeout ends with its worker, stopped under it")
		Eventually(func() bool { return harness.Alive(oldPID) }).WithTimeout(10 * time.Second).Should(BeFalse())
	})
})
