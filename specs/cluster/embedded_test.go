package cluster_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/cluster"
	ch "github.com/pyvisor/pyvisor/specs/internal/clusterharness"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

var _ = Describe("Two nodes embedded in one Go process", Label("cluster", "python"), func() {
	BeforeEach(func() { harness.CheckClusterLeaks(runtimeDir) })

	DescribeTable("leave no goroutine, process, port or socket file behind once both have stopped",
		func(provider string) {
			ports := ch.FreePorts(2)
			peers := []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])}
			var endpoint string
			if provider == cluster.Etcd {
				endpoint = startEtcd()
			}
			start := func(name string, port int, pools ...pyvisor.PoolConfig) *pyvisor.Runtime {
				section := pyvisor.ClusterConfig{Provider: provider, Node: name,
					Automanaged: cluster.AutomanagedConfig{Port: port, Peers: peers, Refresh: 200 * time.Millisecond},
					Etcd:        cluster.EtcdConfig{Endpoints: []string{endpoint}, Prefix: "/embedded-" + fmt.Sprint(ports[0])}}
				if provider == cluster.Etcd {
					section.Automanaged = cluster.AutomanagedConfig{}
				}
				rt, err := pyvisor.Start(context.Background(), pyvisor.Config{Python: python, Pools: pools, Cluster: section},
					pyvisor.WithLogger(zerolog.New(GinkgoWriter).Level(zerolog.WarnLevel)))
				Expect(err).NotTo(HaveOccurred())
				return rt
			}
			a := start("a", ports[0])
			b := start("b", ports[1], pyvisor.PoolConfig{Name: "beta", Tools: []string{"pyvisor_worker.examples"}, Workers: 1})
			Eventually(a.Members).Should(ConsistOf("a", "b"))
			var ran pyvisor.Ran
			sum, err := pyvisor.Call[int](context.Background(), a, "beta", "add", map[string]int{"a": 2, "b": 3}, pyvisor.WithRan(&ran))
			Expect(err).NotTo(HaveOccurred())
			Expect(sum).To(Equal(5))
			Expect(ran).To(Equal(pyvisor.Ran{Node: "b", Worker: "beta-0"}))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			Expect(a.Stop(ctx)).To(Succeed())
			Expect(b.Stop(ctx)).To(Succeed())
			Expect(ch.FreePortsAt(ports...)).To(Succeed(), "the automanaged ports are free again")
		},
		Entry("automanaged", cluster.Automanaged),
		Entry("etcd", Label("etcd"), cluster.Etcd),
	)

	It("refuses to start a node whose automanaged port is taken, saying which setting to change", func() {
		ports := ch.FreePorts(1)
		first, err := pyvisor.Start(context.Background(), pyvisor.Config{Python: python,
			Cluster: pyvisor.ClusterConfig{Provider: cluster.Automanaged, Node: "first",
				Automanaged: cluster.AutomanagedConfig{Port: ports[0], Peers: []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}}}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(first.Stop, context.Background())
		_, err = pyvisor.Start(context.Background(), pyvisor.Config{Python: python,
			Cluster: pyvisor.ClusterConfig{Provider: cluster.Automanaged, Node: "second",
				Automanaged: cluster.AutomanagedConfig{Port: ports[0], Peers: []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}}}})
		Expect(err).To(MatchError(ContainSubstring("cluster.automanaged.port")))
	})

	It("refuses to start a node whose etcd cannot be reached, within the dial timeout", func() {
		ports := ch.FreePorts(1)
		began := time.Now()
		_, err := pyvisor.Start(context.Background(), pyvisor.Config{Python: python,
			Cluster: pyvisor.ClusterConfig{Provider: cluster.Etcd, Node: "lonely",
				Etcd: cluster.EtcdConfig{Endpoints: []string{fmt.Sprintf("http://127.0.0.1:%d", ports[0])}, DialTimeout: time.Second}}})
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("etcd"))
		Expect(time.Since(began)).To(BeNumerically("<", 15*time.Second))
	})
})
