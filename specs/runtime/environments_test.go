package runtime_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/envs"
)

// sixTools reports the version of six its environment has.
const sixTools = "import six\nfrom pyvisor_worker import tool\n\n@tool\ndef six_version() -> str:\n    return six.__version__\n"

// project writes a tools module and one requirements file per pool into a fresh folder,
// with a configuration whose pools name them, and loads it.
func project(cache string, pins map[string]string) pyvisor.Config {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	Expect(os.WriteFile(filepath.Join(dir, "six_tools.py"), []byte(sixTools), 0o644)).To(Succeed())
	yaml := "environments: " + cache + "\npools:\n"
	for name, pin := range pins {
		Expect(os.MkdirAll(filepath.Join(dir, name), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, name, "requirements.txt"), []byte(pin+"\n"), 0o644)).To(Succeed())
		yaml += "  - name: " + name + "\n    tools: [six_tools]\n    workers: 1\n    requirements: " + name + "/requirements.txt\n"
	}
	Expect(os.WriteFile(filepath.Join(dir, "pyvisor.yaml"), []byte(yaml), 0o644)).To(Succeed())
	cfg, err := pyvisor.LoadConfig(filepath.Join(dir, "pyvisor.yaml"))
	Expect(err).NotTo(HaveOccurred())
	cfg.Python = python // the Python the environments are based on
	return cfg
}

// build builds the environment of every pool of cfg, as `pyvisor setup -config` does,
// and says which were reused.
func build(cfg pyvisor.Config) map[string]bool {
	GinkgoHelper()
	reused := map[string]bool{}
	for _, p := range cfg.Pools {
		cache, spec, ok := cfg.Environment(p)
		Expect(ok).To(BeTrue())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		_, again, err := cache.Build(ctx, spec, GinkgoWriter)
		cancel()
		Expect(err).NotTo(HaveOccurred())
		reused[p.Name] = again
	}
	return reused
}

var _ = Describe("Pools with environments of their own", Label("python", "environments"), func() {
	It("serve two pools that pin different versions of one package, side by side in one runtime", func() {
		cfg := project(GinkgoT().TempDir(), map[string]string{"old": "six==1.16.0", "new": "six==1.17.0"})
		Expect(build(cfg)).To(Equal(map[string]bool{"old": false, "new": false}))

		rt, _ := start(cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for pool, want := range map[string]string{"old": "1.16.0", "new": "1.17.0"} {
			got, err := pyvisor.Call[string](ctx, rt, pool, "six_version", nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want), "pool %s", pool)
		}
	})

	It("reuse a built environment until its requirements change", func() {
		cache := GinkgoT().TempDir()
		cfg := project(cache, map[string]string{"a": "six==1.16.0"})
		Expect(build(cfg)).To(Equal(map[string]bool{"a": false}))
		Expect(build(cfg)).To(Equal(map[string]bool{"a": true}))

		again := project(cache, map[string]string{"a": "six==1.16.0"}) // another project, the same pins
		Expect(build(again)).To(Equal(map[string]bool{"a": true}))

		changed := project(cache, map[string]string{"a": "six==1.17.0"})
		_, err := changed.Interpreter(context.Background(), changed.Pools[0])
		Expect(err).To(MatchError(pyvisor.ErrEnvironmentNotBuilt))
	})

	It("build from a project's uv.lock, with the versions it pins", func() {
		cache := GinkgoT().TempDir()
		cfg := project(cache, map[string]string{"old": "six==1.16.0"})
		Expect(build(cfg)).To(Equal(map[string]bool{"old": false})) // and the cache has its uv

		dir := cfg.Dir // the project's folder
		Expect(os.WriteFile(filepath.Join(dir, "pyproject.toml"), []byte(
			"[project]\nname = \"model\"\nversion = \"0.1.0\"\nrequires-python = \">=3.10\"\ndependencies = [\"six>=1.15,<1.17\"]\n"), 0o644)).To(Succeed())
		lock := exec.Command(filepath.Join(cache, ".uv", envs.UVVersion, "bin", "uv"), "lock", "--quiet")
		lock.Dir, lock.Env = dir, append(os.Environ(), "UV_CACHE_DIR="+filepath.Join(cache, ".uv-cache"))
		lock.Stdout, lock.Stderr = GinkgoWriter, GinkgoWriter
		Expect(lock.Run()).To(Succeed())

		cfg.Pools[0].Requirements = filepath.Join(dir, "uv.lock")
		Expect(build(cfg)).To(Equal(map[string]bool{"old": false}), "a new key: the lock is not the requirements file")
		rt, _ := start(cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got, err := pyvisor.Call[string](ctx, rt, "old", "six_version", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal("1.16.0"))
	})

	It("roll a pool to new requirements with Upgrade: the new dependency set and the code together", func() {
		cache := GinkgoT().TempDir()
		cfg := project(cache, map[string]string{"a": "six==1.16.0"})
		Expect(build(cfg)).To(Equal(map[string]bool{"a": false}))
		next := project(cache, map[string]string{"a": "six==1.17.0"})
		Expect(build(next)).To(Equal(map[string]bool{"a": false}))

		rt, _ := start(cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		Expect(pyvisor.Call[string](ctx, rt, "a", "six_version", nil)).To(Equal("1.16.0"))
		// The other file's pool, its paths taken from its own folder.
		Expect(rt.Upgrade(ctx, next.WithDefaults().Pools[0])).To(Succeed())
		Expect(pyvisor.Call[string](ctx, rt, "a", "six_version", nil)).To(Equal("1.17.0"))

		unbuilt := project(cache, map[string]string{"a": "six==1.15.0"})
		Expect(rt.Upgrade(ctx, unbuilt.WithDefaults().Pools[0])).To(MatchError(pyvisor.ErrEnvironmentNotBuilt))
		Expect(pyvisor.Call[string](ctx, rt, "a", "six_version", nil)).To(Equal("1.17.0"), "nothing changed")
	})

	It("refuse to start a pool whose environment is not built, saying how to build it", func() {
		cfg := project(GinkgoT().TempDir(), map[string]string{"a": "six==1.15.0"})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		began := time.Now()
		_, err := pyvisor.Start(ctx, cfg)
		Expect(err).To(MatchError(pyvisor.ErrEnvironmentNotBuilt))
		Expect(err.Error()).To(And(
			ContainSubstring(`pool "a"`),
			ContainSubstring(filepath.Join("a", "requirements.txt")),
			ContainSubstring("pyvisor setup -config FILE"),
		))
		Expect(time.Since(began)).To(BeNumerically("<", 5*time.Second), "nothing is installed at Start")
	})

	It("refuse requirements that conflict, with uv's reason, leaving nothing behind", func() {
		cache := GinkgoT().TempDir()
		cfg := project(cache, map[string]string{"a": "six==1.16.0\nsix==1.17.0"})
		c, spec, _ := cfg.Environment(cfg.Pools[0])
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_, _, err := c.Build(ctx, spec, io.Discard)
		Expect(err).To(MatchError(envs.ErrBuild))
		Expect(err.Error()).To(ContainSubstring("no versions fit"))
		_, err = cfg.Interpreter(ctx, cfg.Pools[0])
		Expect(err).To(MatchError(pyvisor.ErrEnvironmentNotBuilt))
		Expect(filepath.Glob(filepath.Join(cache, "*", "bin"))).To(BeEmpty(), "no half-made environment")
	})
})
