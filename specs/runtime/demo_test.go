package runtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// demoSummary is the part of the demo's JSON summary line ("demo summary") the spec reads.
type demoSummary struct {
	Problems []string `json:"problems"`
	Upgrade  *struct {
		Calls         int    `json:"calls"`
		Failed        int    `json:"failed"`
		VersionBefore string `json:"version_before"`
		VersionAfter  string `json:"version_after"`
	} `json:"upgrade"`
}

// findDemoSummary finds the JSON summary among the demo's log lines on stderr.
func findDemoSummary(stderr string) (demoSummary, bool) {
	for line := range strings.Lines(stderr) {
		var l struct {
			Message string `json:"message"`
			demoSummary
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Message == "demo summary" {
			return l.demoSummary, true
		}
	}
	return demoSummary{}, false
}

var _ = Describe("The demo (go tool task demo)", Label("python"), func() {
	It("runs its scenario to a clean exit, an upgrade under load with no failed call included", func() {
		bin := filepath.Join(GinkgoT().TempDir(), "demo")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/pyvisor/pyvisor/cmd/demo").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "build the demo: %s", out)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-log-format", "json")
		cmd.Env = append(os.Environ(), "PYVISOR_PYTHON="+python)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		Expect(err).NotTo(HaveOccurred(), "the demo failed:\n%s\n%s", stdout, stderr.String())

		Expect(string(stdout)).To(And(
			ContainSubstring("result        the scenario went as expected"),
			MatchRegexp(`(?m)^upgrade\s+[0-9a-f]{12} -> demo-v2 in \S+, under load$`),
			MatchRegexp(`(?m)^  its calls\s+[1-9]\d* during the upgrade, 0 failed$`),
			ContainSubstring("stop          clean"),
		))
		sum, ok := findDemoSummary(stderr.String())
		Expect(ok).To(BeTrue(), "the JSON summary line on stderr:\n%s", stderr.String())
		Expect(sum.Problems).To(BeEmpty())
		Expect(sum.Upgrade).NotTo(BeNil(), "the summary has the upgrade")
		Expect(sum.Upgrade.Calls).To(BeNumerically(">", 0), "calls were made during the upgrade")
		Expect(sum.Upgrade.Failed).To(BeZero(), "no call failed during the upgrade")
		Expect(sum.Upgrade.VersionBefore).To(MatchRegexp(`^[0-9a-f]{12}$`), "the hash of the example tools' code")
		Expect(sum.Upgrade.VersionAfter).To(Equal("demo-v2"))
		Expect(sum.Upgrade.VersionAfter).NotTo(Equal(sum.Upgrade.VersionBefore))
	})
})
