package e2e_test

import (
	"fmt"
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/internal/freeport"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "End to end: one call, one trace in a real Jaeger")
}

// envJaeger names the Jaeger v2 binary these specs run (`go tool task e2e:test` builds
// it into .tools/jaeger/bin/jaeger and sets this variable).
const envJaeger = "PYVISOR_JAEGER"

var (
	jaegerBin  string
	jaegerRoot string // per-spec Jaeger config files and logs, outside runtimeDir
	python     string
	runtimeDir string // $TMPDIR of the suite: the workers' socket directories go here
)

var _ = BeforeSuite(func() {
	jaegerBin = os.Getenv(envJaeger)
	if jaegerBin == "" {
		Skip(envJaeger + " is not set: the e2e specs need a Jaeger v2 binary; run `go tool task e2e:test`, which builds one")
	}
	info, err := os.Stat(jaegerBin)
	Expect(err).NotTo(HaveOccurred(), "%s=%s", envJaeger, jaegerBin)
	Expect(info.Mode().IsRegular() && info.Mode()&0o111 != 0).To(BeTrue(), "%s=%s is not an executable file", envJaeger, jaegerBin)

	var remove func() error
	jaegerRoot, remove = harness.TempDir("pvj-") // before $TMPDIR becomes the workers' dir
	DeferCleanup(remove)
	python, runtimeDir = harness.Suite("pve2e-")
})

// The leak check is registered first, so it runs last: after the spec's runtime and its
// Jaeger have stopped.
var _ = BeforeEach(func() { harness.CheckLeaks(runtimeDir) })

// freePorts returns n distinct TCP ports free on 127.0.0.1 right now.
func freePorts(n int) []int {
	GinkgoHelper()
	ports, err := freeport.Take(n)
	Expect(err).NotTo(HaveOccurred())
	return ports
}

// setEnv sets (or, for an empty value, unsets) environment variables until the spec
// ends. The bridge passes OTEL_* through to the Python workers it starts, so they must
// be in this process's environment before the runtime starts.
func setEnv(vars map[string]string) {
	GinkgoHelper()
	for k, v := range vars {
		old, had := os.LookupEnv(k)
		if had {
			DeferCleanup(os.Setenv, k, old)
		} else {
			DeferCleanup(os.Unsetenv, k)
		}
		if v == "" {
			Expect(os.Unsetenv(k)).To(Succeed())
		} else {
			Expect(os.Setenv(k, v)).To(Succeed())
		}
	}
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
