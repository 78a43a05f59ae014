package runtime_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("Requests racing Stop", Label("python"), func() {
	It("each answer or fail with ErrStopped, none waiting past Stop, even without a deadline", func() {
		rt, _ := start(pool(1))
		var wg sync.WaitGroup
		results := make(chan error, 1000)
		stopping := make(chan struct{})
		for i := range 4 {
			wg.Go(func() {
				for n := 0; ; n++ {
					var err error
					if i > 0 {
						_, err = rt.Stats(context.Background())
					} else { // one resizer: concurrent resizes refuse each other
						err = rt.Resize(context.Background(), "default", 1+n%2)
					}
					select {
					case results <- err:
					default:
					}
					select {
					case <-stopping:
						if err != nil {
							return
						}
					default:
					}
				}
			})
		}
		Eventually(func() int { return len(results) }).Should(BeNumerically(">=", 20), "requests are running when Stop begins")
		close(stopping)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		Expect(rt.Stop(ctx)).To(Succeed())
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		Eventually(done).Should(BeClosed(), "every request returned")
		close(results)
		for err := range results {
			if err != nil {
				Expect(err).To(MatchError(pyvisor.ErrStopped))
			}
		}
		_, err := rt.Stats(context.Background())
		Expect(err).To(MatchError(pyvisor.ErrStopped))
		Expect(rt.Resize(context.Background(), "default", 2)).To(MatchError(pyvisor.ErrStopped))
	})
})
