package harness

import (
	"os"
	"os/exec"

	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/bridge"
)

// Python returns the interpreter the specs' workers run, after checking that it has the
// worker package.
func Python() string {
	python := bridge.Interpreter()
	out, err := exec.Command(python, "-c", "import pyvisor_worker").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "the specs need %s with pyvisor-worker installed: run `go tool task setup`\n%s", python, out)
	return python
}

// TempDir makes a private directory for a suite's worker sockets and returns it with
// the function that removes it.
func TempDir(prefix string) (string, func() error) {
	dir, err := os.MkdirTemp("", prefix)
	Expect(err).NotTo(HaveOccurred())
	return dir, func() error { return os.RemoveAll(dir) }
}
