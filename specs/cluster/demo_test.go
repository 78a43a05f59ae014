package cluster_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("The cluster demo (go tool task demo -- -cluster)", Label("cluster", "python"), func() {
	It("runs three node processes through its scenario, a killed node included, and prints one trace across them", func() {
		bin := filepath.Join(workDir, "demo")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/pyvisor/pyvisor/cmd/demo").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "build the demo: %s", out)
		cmd := exec.Command(bin, "-cluster", "-log-format", "json")
		cmd.Env = append(os.Environ(), "PYVISOR_PYTHON="+python)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		Expect(err).NotTo(HaveOccurred(), "the demo failed:\n%s\n%s", stdout, stderr.String())
		Expect(string(stdout)).To(And(
			ContainSubstring("calls by node: gpu-1="),
			MatchRegexp(`gpu-1 killed under load: .*node_lost=\d+`),
			ContainSubstring("Python processes left: 0"),
		))
		Expect(stderr.String()).To(MatchRegexp(`(?s)execute add\s+client.*remote add\s+client.*remote add\s+gpu-\d.*tool add\s+pyvisor-worker`))
	})
})
