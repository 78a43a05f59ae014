package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("A configuration file", Label("python"), func() {
	It("runs the tools module beside it from any working directory", func() {
		project := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(project, "beside_tools.py"), []byte(
			"from pyvisor_worker import tool\n\n@tool\ndef twice(x: int) -> int:\n    return 2 * x\n"), 0o644)).To(Succeed())
		config := filepath.Join(project, "pyvisor.yaml")
		Expect(os.WriteFile(config, []byte("pools:\n  - name: default\n    tools: [beside_tools]\n    workers: 1\n"), 0o644)).To(Succeed())

		elsewhere := GinkgoT().TempDir()
		wd, err := os.Getwd()
		Expect(err).NotTo(HaveOccurred())
		Expect(os.Chdir(elsewhere)).To(Succeed())
		DeferCleanup(os.Chdir, wd)

		cfg, err := pyvisor.LoadConfig(config)
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Dir).To(Equal(project))
		cfg.Python = python
		rt, _ := start(cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got, err := pyvisor.Call[int](ctx, rt, "default", "twice", map[string]int{"x": 21})
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(42))
	})
})
