package runtime_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("Arrays and blobs through a pool's shared memory", Label("python"), func() {
	It("send a Buffer Go filled in place, with no copy, to whichever worker runs the call", func() {
		rt, _ := start(pool(2))
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		buf, err := rt.Alloc(ctx, "default", 2<<20)
		Expect(err).NotTo(HaveOccurred())
		_, _ = rand.Read(buf.Bytes())
		want := bytes.Clone(buf.Bytes())
		for range 4 { // both workers read the same pool memory
			var info map[string]any
			res, err := rt.Execute(ctx, "default", "payload_info", nil, pyvisor.WithBuffer(buf))
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Decode(&info)).To(Succeed())
			Expect(info).To(HaveKeyWithValue("shared", true))
		}
		res, err := rt.Execute(ctx, "default", "echo_payload", nil, pyvisor.WithBuffer(buf), pyvisor.WithResultView())
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Equal(res.Payload, want)).To(BeTrue())
		res.Release()
		buf.Release()
		buf.Release() // only the first counts
	})

	It("give a Buffer's memory back once its owner and every call holding it let go", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.SharedMemory.PoolBytes = 4 << 20 }))
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		buf, err := rt.Alloc(ctx, "default", 3<<20)
		Expect(err).NotTo(HaveOccurred())
		held := make(chan error, 1)
		holdCtx, stop := context.WithCancel(ctx)
		go func() {
			_, err := rt.Execute(holdCtx, "default", "hold_payload", map[string]float64{"seconds": 30}, pyvisor.WithBuffer(buf))
			held <- err
		}()
		Eventually(func() int { return stats(rt).Workers[0].InFlight }).Should(Equal(1))
		buf.Release() // the running call still holds it

		short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancelShort()
		_, err = rt.Alloc(short, "default", 3<<20)
		Expect(err).To(MatchError(context.DeadlineExceeded), "the pool's memory is full: Alloc waits to its deadline")

		stop()
		Eventually(held).Should(Receive(MatchError(context.Canceled)))
		again, err := rt.Alloc(ctx, "default", 3<<20)
		Expect(err).NotTo(HaveOccurred(), "freed once the cancelled body was over")
		again.Release()

		_, err = rt.Alloc(ctx, "default", 5<<20)
		Expect(err).To(MatchError(pyvisor.ErrMessageTooLarge), "more than the pool's memory fails at once")
	})

	It("refuse a call whose Buffer was released before it started", func() {
		rt, _ := start(pool(1))
		buf, err := rt.Alloc(context.Background(), "default", 1<<20)
		Expect(err).NotTo(HaveOccurred())
		buf.Release()
		_, err = execute(rt, "payload_size", nil, pyvisor.WithBuffer(buf))
		Expect(err).To(MatchError(pyvisor.ErrInvalidArgument))
		for _, err := range rt.Stream(context.Background(), "default", "frames", map[string]int{"n": 1, "size": 1}, pyvisor.WithBuffer(buf)) {
			Expect(err).To(MatchError(pyvisor.ErrInvalidArgument))
		}
	})

	It("round-trip a payload past the frames' 16 MiB limit with the plain API", func() {
		rt, _ := start(pool(1))
		in := make([]byte, 40<<20)
		_, _ = rand.Read(in)
		res, err := execute(rt, "echo_payload", nil, pyvisor.WithPayload(in))
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Equal(res.Payload, in)).To(BeTrue())
		res.Release() // a copy: nothing to give back, and harmless
	})

	It("fall back to plain memory when shared memory is off", func() {
		rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) { p.SharedMemory.Off = true }))
		buf, err := rt.Alloc(context.Background(), "default", 1<<10)
		Expect(err).NotTo(HaveOccurred())
		copy(buf.Bytes(), "hello")
		res, err := execute(rt, "payload_info", nil, pyvisor.WithBuffer(buf))
		Expect(err).NotTo(HaveOccurred())
		var info map[string]any
		Expect(res.Decode(&info)).To(Succeed())
		Expect(info).To(HaveKeyWithValue("shared", false))
		buf.Release()
	})
})
