package cluster_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"

	ch "github.com/pyvisor/pyvisor/specs/internal/clusterharness"
)

var _ = Describe("Three nodes with the automanaged provider", Label("cluster", "python"), Ordered, func() {
	var t *trio
	BeforeAll(func() {
		ports := ch.FreePorts(3)
		peers := make([]string, len(ports))
		for i, p := range ports {
			peers[i] = fmt.Sprintf("127.0.0.1:%d", p)
		}
		port := map[string]int{"a": ports[0], "b": ports[1], "c": ports[2]}
		t = startTrio(func(name string) map[string]any {
			return map[string]any{
				"provider":    "automanaged",
				"automanaged": map[string]any{"port": port[name], "peers": peers, "refresh": "500ms"},
			}
		})
	})

	behavesAsOneCluster(&t)
})
