package cluster_test

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Cluster: pools across nodes, one trace across nodes")
}

var (
	python     string
	runtimeDir string
	nodeBin    string // the clusternode command, built for the suite
	workDir    string // the nodes' files: config, spans, logs, sockets
)

var _ = BeforeSuite(func() {
	python, runtimeDir = harness.Suite("pvcl-")
	SetDefaultEventuallyTimeout(30 * time.Second)
	var remove func() error
	workDir, remove = harness.TempDir("pvcl-nodes-")
	DeferCleanup(remove)
	nodeBin = filepath.Join(workDir, "clusternode")
	out, err := exec.Command("go", "build", "-o", nodeBin, "github.com/pyvisor/pyvisor/specs/internal/clusternode").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "build clusternode: %s", out)
})
