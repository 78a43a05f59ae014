package metrics_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// promtool is $PYVISOR_PROMTOOL (`go tool task metrics:check` sets it), or the spec is
// skipped.
func promtool() string {
	GinkgoHelper()
	path := os.Getenv("PYVISOR_PROMTOOL")
	if path == "" {
		Skip("PYVISOR_PROMTOOL is not set: run `go tool task metrics:check` (it installs promtool)")
	}
	return path
}

var _ = Describe("A scrape of the endpoint", Label("python"), func() {
	It("passes `promtool check metrics`", func() {
		tool := promtool()
		rt := start(pool(1, heartbeats))
		_, err := execute(rt, "add", map[string]int{"a": 1, "b": 2})
		Expect(err).NotTo(HaveOccurred())
		_, err = execute(rt, "raise", nil)
		Expect(err).To(HaveOccurred())
		Eventually(value(rt, "pyvisor_heartbeat_pongs_total", L{"pool": poolName})).Should(BeNumerically(">=", 1))
		body, err := scrapeText(rt)
		Expect(err).NotTo(HaveOccurred())

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, tool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "promtool check metrics:\n%s\non:\n%s", out, body)
		GinkgoWriter.Printf("promtool check metrics: ok %s\n", out)
	})
})
