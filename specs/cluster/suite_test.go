package cluster_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	ch "github.com/pyvisor/pyvisor/specs/internal/clusterharness"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Cluster: pools across nodes, one trace across nodes")
}

var (
	python     string
	runtimeDir string
	workDir    string // the nodes' files: config, spans, logs, sockets
	launcher   ch.Launcher
)

var _ = BeforeSuite(func() {
	var remove func() error
	workDir, remove = harness.TempDir("pvcl-nodes-") // before $TMPDIR becomes the workers' dir
	DeferCleanup(remove)
	python, runtimeDir = harness.Suite("pvcl-")
	SetDefaultEventuallyTimeout(30 * time.Second)
	launcher = ch.Launcher{Bin: ch.Build(workDir), Dir: workDir, Python: python}
})
