package cluster_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	ch "github.com/pyvisor/pyvisor/specs/internal/clusterharness"
)

// startEtcd runs the etcd at $PYVISOR_ETCD (built by `go tool task etcd:build`) on
// loopback, a member of its own, and returns its client URL; it is killed after the
// container.
func startEtcd() string {
	bin := os.Getenv("PYVISOR_ETCD")
	if bin == "" {
		Skip("PYVISOR_ETCD is not set: run through `go tool task test`, which builds etcd (task etcd:build)")
	}
	ports := ch.FreePorts(2)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	data := filepath.Join(workDir, "etcd")
	cmd := exec.Command(bin, "--name", "pyvisor-etcd", "--data-dir", data,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "pyvisor-etcd="+peer, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		_ = os.RemoveAll(data)
	})
	Eventually(func() (int, error) {
		res, err := http.Get(client + "/health")
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}).WithTimeout(20 * time.Second).Should(Equal(http.StatusOK))
	return client
}

var _ = Describe("Three nodes with the etcd provider, against a real etcd", Label("cluster", "etcd", "python"), Ordered, func() {
	var t *trio
	BeforeAll(func() {
		endpoint := startEtcd()
		prefix := fmt.Sprintf("/pyvisor-spec-%d", GinkgoRandomSeed())
		t = startTrio(func(string) map[string]any {
			return map[string]any{
				"provider": "etcd",
				"etcd":     map[string]any{"endpoints": []string{endpoint}, "prefix": prefix, "ttl": "2s"},
			}
		})
	})

	behavesAsOneCluster(&t)
})
