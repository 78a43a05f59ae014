package pyvisor_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor"
)

// payloadSizes are BenchmarkPayload's sizes, by their names in the benchmark's.
var payloadSizes = []struct {
	name string
	n    int
}{{"64KiB", 64 << 10}, {"1MiB", 1 << 20}, {"16MiB", 16 << 20}, {"256MiB", 256 << 20}}

// lazyRuntime starts a runtime of cfg the first time a sub-benchmark asks for it, stopped
// at b's cleanup: a -bench pattern that selects none of its sub-benchmarks starts none.
func lazyRuntime(b *testing.B, cfg pyvisor.Config) func(*testing.B) *pyvisor.Runtime {
	var (
		once sync.Once
		rt   *pyvisor.Runtime
		err  error
	)
	return func(sb *testing.B) *pyvisor.Runtime {
		sb.Helper()
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if rt, err = pyvisor.Start(ctx, cfg); err != nil {
				return
			}
			b.Cleanup(func() {
				if err := rt.Stop(context.Background()); err != nil {
					b.Error(err)
				}
			})
		})
		if err != nil {
			sb.Fatal(err)
		}
		return rt
	}
}

// BenchmarkPayload measures round trips Go -> echo_payload (the tool returns its
// payload) -> Go on a one-worker pool, heartbeats off, through three APIs:
// api=copy, the default (WithPayload; Result.Payload is a heap copy), through shared
// memory from 64 KiB; api=inplace, an Alloc'd Buffer filled once and sent WithBuffer,
// the result a view (WithResultView) released after each call; api=frames, shared
// memory off and MaxMessageBytes raised: every byte in the gRPC frames, as before issue
// 19. SetBytes is 2×size, so MB/s is the effective rate of issue 19's goals (cmd/bench
// sets them against a bare socket echo and memmove). go-cpu-ns/op is this process's CPU
// per round trip, not the worker's.
func BenchmarkPayload(b *testing.B) {
	python := benchPython(b)
	cfg := benchConfig(python, 1)
	cfg.Pools[0].Heartbeat.Enabled = false
	shared := lazyRuntime(b, cfg)
	frames := benchConfig(python, 1)
	frames.Pools[0].Heartbeat.Enabled = false
	frames.Pools[0].SharedMemory.Off = true
	frames.Pools[0].MaxMessageBytes = payloadSizes[len(payloadSizes)-1].n + 1<<20
	inFrames := lazyRuntime(b, frames)
	ctx := context.Background()

	for _, size := range payloadSizes {
		for _, api := range []string{"copy", "inplace", "frames"} {
			b.Run(fmt.Sprintf("size=%s/api=%s", size.name, api), func(b *testing.B) {
				in := make([]byte, size.n)
				for i := range in {
					in[i] = byte(i % 251)
				}
				var call func(check bool) error
				switch api {
				case "copy", "frames":
					rt := shared(b)
					if api == "frames" {
						rt = inFrames(b)
					}
					call = func(check bool) error {
						res, err := rt.Execute(ctx, benchPool, "echo_payload", nil, pyvisor.WithPayload(in))
						if err != nil {
							return err
						}
						return sameEcho(res.Payload, in, check)
					}
				case "inplace":
					rt := shared(b)
					buf, err := rt.Alloc(ctx, benchPool, size.n)
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(buf.Release)
					copy(buf.Bytes(), in)
					call = func(check bool) error {
						res, err := rt.Execute(ctx, benchPool, "echo_payload", nil, pyvisor.WithBuffer(buf), pyvisor.WithResultView())
						if err != nil {
							return err
						}
						defer res.Release()
						return sameEcho(res.Payload, in, check)
					}
				}
				if err := call(true); err != nil { // warm-up, byte-exact
					b.Fatal(err)
				}
				b.SetBytes(2 * int64(size.n))
				cpu, n := goCPUTime(), 0
				for b.Loop() {
					if err := call(false); err != nil {
						b.Fatal(err)
					}
					n++
				}
				b.ReportMetric(float64(goCPUTime()-cpu)/float64(n), "go-cpu-ns/op")
			})
		}
	}
}

// sameEcho checks an echo's length, and its bytes: all of them when full, else the
// first and the last.
func sameEcho(got, want []byte, full bool) error {
	switch {
	case len(got) != len(want):
		return fmt.Errorf("echo returned %d bytes, sent %d", len(got), len(want))
	case full && !bytes.Equal(got, want):
		return fmt.Errorf("echo of %d bytes returned other bytes", len(want))
	case len(want) > 0 && (got[0] != want[0] || got[len(got)-1] != want[len(want)-1]):
		return fmt.Errorf("echo of %d bytes returned other bytes", len(want))
	}
	return nil
}
