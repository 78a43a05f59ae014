package architecture_test

import (
	"os/exec"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestArchitecture(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Architecture: who may import whom")
}

const module = "github.com/pyvisor/pyvisor"

// projectDeps lists the project packages pkg depends on, directly or not.
func projectDeps(pkg string) []string {
	GinkgoHelper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg).Output()
	Expect(err).NotTo(HaveOccurred(), "go list %s", pkg)
	var deps []string
	for _, dep := range strings.Fields(string(out)) {
		if dep != module+"/"+pkg && strings.HasPrefix(dep, module+"/") {
			deps = append(deps, strings.TrimPrefix(dep, module+"/"))
		}
	}
	return deps
}

var _ = Describe("The package graph", Label("unit"), func() {
	DescribeTable("keeps each package to the project packages it may use",
		func(pkg string, allowed []string) {
			Expect(projectDeps(pkg)).To(Or(BeEmpty(), HaveEach(BeElementOf(allowed))))
		},
		Entry("messages knows only the typed arrays it carries", "messages", []string{"nd"}),
		Entry("typed arrays are a leaf", "nd", []string{}),
		Entry("the generated wire code is a leaf", "messages/workerv1", []string{}),
		Entry("supervision knows nothing of Python or the wire", "supervision", []string{"internal/lifecycle"}),
		Entry("its test doubles know only supervision", "supervision/supervisiontest", []string{"supervision", "internal/lifecycle"}),
		Entry("the embedded worker package is a leaf", "python", []string{}),
		Entry("bridge knows nothing of actors (telemetry gives a callback's ctx the call's correlation id; python, the digest its workers must match; shm, the arenas of its payloads; nd, its typed arrays)", "bridge", []string{"messages/workerv1", "telemetry", "internal/lifecycle", "python", "shm", "nd"}),
		Entry("shared memory is a leaf", "shm", []string{}),
		Entry("telemetry is a leaf", "telemetry", []string{}),
		Entry("otelactor knows only the envelope header keys", "telemetry/otelactor", []string{"messages", "nd"}),
		Entry("actors use bridge, supervision, messages and telemetry, not the facade", "actors",
			[]string{"bridge", "supervision", "messages", "messages/workerv1", "telemetry", "telemetry/otelactor", "internal/lifecycle", "python", "shm", "nd"}),
		Entry("the Arrow support knows only the typed arrays", "tables", []string{"nd"}),
	)

	It("links arrow-go only into programs that import the Arrow support", func() {
		out, err := exec.Command("go", "list", "-deps", module).Output()
		Expect(err).NotTo(HaveOccurred())
		Expect(string(out)).NotTo(ContainSubstring("github.com/apache/arrow-go"))
	})
})
