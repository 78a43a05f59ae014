package cluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/cluster"
	"github.com/pyvisor/pyvisor/nd"
	ch "github.com/pyvisor/pyvisor/specs/internal/clusterharness"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

var _ = Describe("Large payloads between nodes", Ordered, Label("cluster", "python"), func() {
	var a *pyvisor.Runtime
	BeforeAll(func() {
		harness.CheckClusterLeaks(runtimeDir)
		ports := ch.FreePorts(2)
		peers := []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])}
		start := func(name string, port int, pools ...pyvisor.PoolConfig) *pyvisor.Runtime {
			rt, err := pyvisor.Start(context.Background(), pyvisor.Config{Python: python, Pools: pools,
				Cluster: pyvisor.ClusterConfig{Provider: cluster.Automanaged, Node: name,
					Automanaged: cluster.AutomanagedConfig{Port: port, Peers: peers, Refresh: 200 * time.Millisecond}}},
				pyvisor.WithLogger(zerolog.New(GinkgoWriter).Level(zerolog.WarnLevel)))
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				Expect(rt.Stop(ctx)).To(Succeed())
			})
			return rt
		}
		a = start("a", ports[0])
		start("b", ports[1], pyvisor.PoolConfig{Name: "beta", Tools: []string{"pyvisor_worker.examples"}, Workers: 1})
		Eventually(a.Members).Should(ConsistOf("a", "b"))
	})

	It("carry 256 MiB to a tool on another node and back, byte-exact, on bulk streams beside the actors' messages", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		in := make([]byte, 256<<20)
		_, _ = rand.Read(in)
		var ran pyvisor.Ran
		res, err := a.Execute(ctx, "beta", "echo_payload", nil, pyvisor.WithPayload(in), pyvisor.WithRan(&ran))
		Expect(err).NotTo(HaveOccurred())
		Expect(ran.Node).To(Equal("b"))
		Expect(len(res.Payload)).To(Equal(len(in)))
		Expect(bytes.Equal(res.Payload, in)).To(BeTrue())
	})

	It("land a large payload from another node straight in the hosting pool's shared memory", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := a.Execute(ctx, "beta", "payload_info", nil, pyvisor.WithPayload(make([]byte, 4<<20)))
		Expect(err).NotTo(HaveOccurred())
		Expect(res.JSON).To(MatchJSON(`{"size": 4194304, "type": "memoryview", "readonly": true, "shared": true}`))
	})

	It("carry typed arrays, mixed with JSON, to a tool on another node and back", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		values := make([]float32, 4<<20) // 16 MiB: on a bulk stream
		for i := range values {
			values[i] = 1
		}
		x, _ := nd.Of(values, 2048, 2048)
		res, err := a.Execute(ctx, "beta", "scale_array", map[string]any{"factor": 3, "label": "far"}, pyvisor.WithArray("x", x))
		Expect(err).NotTo(HaveOccurred())
		Expect(res.JSON).To(MatchJSON(`{"label": "far", "sum": 4194304}`))
		scaled, err := nd.Values[float32](res.Arrays["scaled"])
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Arrays["scaled"].Shape).To(Equal([]int{2048, 2048}))
		Expect(scaled[len(scaled)-1]).To(Equal(float32(3)))

		small, _ := nd.Of([]int16{1, -2, 3})
		res, err = a.Execute(ctx, "beta", "echo_array", nil, pyvisor.WithArray("x", small))
		Expect(err).NotTo(HaveOccurred())
		back, _ := nd.Values[int16](res.Arrays[""])
		Expect(back).To(Equal([]int16{1, -2, 3}), "small arrays travel inline")
	})

	It("return results from another node's worker memory intact while other calls reuse it", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		failures := make(chan error, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer GinkgoRecover()
				in := bytes.Repeat([]byte{byte(i)}, 256<<10) // in shared memory on b, inline between nodes
				res, err := a.Execute(ctx, "beta", "echo_payload", nil, pyvisor.WithPayload(in))
				if err == nil && !bytes.Equal(res.Payload, in) {
					err = fmt.Errorf("caller %d got another call's bytes", i)
				}
				if err != nil {
					failures <- err
				}
			}()
		}
		wg.Wait()
		close(failures)
		Expect(failures).To(BeEmpty())
	})

	It("stream large chunks from another node, each on a bulk stream", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		n := 0
		for res, err := range a.Stream(ctx, "beta", "array_frames", map[string]int{"n": 6, "height": 1080, "width": 1920}) {
			Expect(err).NotTo(HaveOccurred())
			Expect(bytes.Count(res.Arrays[""].Data, []byte{byte(n)})).To(Equal(1080*1920), "frame %d", n)
			n++
		}
		Expect(n).To(Equal(6))
	})

	It("give up a large transfer at the caller's deadline", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := a.Execute(ctx, "beta", "echo_payload", nil, pyvisor.WithPayload(make([]byte, 512<<20)))
		Expect(err).To(MatchError(context.DeadlineExceeded))
	})
})
