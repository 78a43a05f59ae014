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
	It("runs three node processes through its scenario, a killed node and a rolling upgrade node by node included, and prints one trace across them", func() {
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
			// Every call from client during the rolling upgrade succeeded, on both nodes,
			// and each node's workers went from the hash of the tools to demo-v2, in new
			// Python processes, gpu-1 first.
			MatchRegexp(`rolling upgrade, node by node, under load: 2 of 2 nodes upgraded in \S+; [1-9]\d* calls during it, 0 failed; by node gpu-1=[1-9]\d* gpu-2=[1-9]\d*\n`),
			MatchRegexp(`(?s)\n    gpu-1 upgraded: [0-9a-f]+ -> demo-v2 in \S+ \(Python pids \d+,\d+ -> \d+,\d+\), [1-9]\d* calls served on it meanwhile\n`+
				`    gpu-2 upgraded: [0-9a-f]+ -> demo-v2 in \S+ \(Python pids \d+,\d+ -> \d+,\d+\), [1-9]\d* calls served on it meanwhile\n`),
			ContainSubstring("Python processes left: 0"),
		))
		Expect(stderr.String()).To(MatchRegexp(`(?s)execute add\s+client.*remote add\s+client.*remote add\s+gpu-\d.*tool add\s+pyvisor-worker`))
	})
})
