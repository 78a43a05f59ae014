package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
	"github.com/pyvisor/pyvisor/telemetry"
)

// user is what the lookup_user callback takes and returns.
type user struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

var users = map[int]string{1: "Ada", 2: "Grace", 3: "Barbara"}

func lookupUser(_ context.Context, args struct {
	ID int `json:"id"`
}) (user, error) {
	name, ok := users[args.ID]
	if !ok {
		return user{}, fmt.Errorf("no user %d", args.ID)
	}
	return user{ID: args.ID, Name: name}, nil
}

// callbackOutcome is what the call_go example tools return.
type callbackOutcome struct {
	Result json.RawMessage
	Error  *struct{ Kind, Message, Callback string }
}

func callGo(rt *pyvisor.Runtime, tool, name string, args any) callbackOutcome {
	GinkgoHelper()
	res, err := execute(rt, tool, map[string]any{"name": name, "args": args})
	Expect(err).NotTo(HaveOccurred())
	var out callbackOutcome
	Expect(res.Decode(&out)).To(Succeed())
	return out
}

var _ = Describe("A Python tool calling a Go callback", Label("python"), func() {
	It("uses its result, from a sync, an async and a generator tool alike", func() {
		rt, _ := start(pool(1), pyvisor.WithCallback("lookup_user", pyvisor.Typed(lookupUser)))
		for _, tool := range []string{"greet", "greet_async"} {
			res, err := execute(rt, tool, map[string]int{"user_id": 1})
			Expect(err).NotTo(HaveOccurred(), tool)
			Expect(res.JSON).To(MatchJSON(`"Hello, Ada!"`), tool)
		}
		for _, tool := range []string{"greet_each", "greet_each_async"} {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			var got []string
			for res, err := range rt.Stream(ctx, "default", tool, map[string]any{"user_ids": []int{1, 2, 3}}) {
				Expect(err).NotTo(HaveOccurred(), tool)
				var s string
				Expect(res.Decode(&s)).To(Succeed())
				got = append(got, s)
			}
			cancel()
			Expect(got).To(Equal([]string{"Hello, Ada!", "Hello, Grace!", "Hello, Barbara!"}), tool)
		}
	})

	It("runs it with the call's correlation id, a deadline no later than the call's, and a logger carrying the id", func() {
		rt, logs := start(pool(1), pyvisor.WithCallback("whoami_go", func(ctx context.Context, _ json.RawMessage) (any, error) {
			zerolog.Ctx(ctx).Info().Msg("inside the callback")
			deadline, ok := ctx.Deadline()
			return map[string]any{"correlation_id": telemetry.CorrelationID(ctx), "deadline": deadline, "has_deadline": ok}, nil
		}))
		ctx, cancel := context.WithTimeout(telemetry.WithCorrelationID(context.Background(), "cb-spec-1"), 10*time.Second)
		defer cancel()
		callDeadline, _ := ctx.Deadline()
		res, err := rt.Execute(ctx, "default", "call_go", map[string]any{"name": "whoami_go"})
		Expect(err).NotTo(HaveOccurred())
		var out struct {
			Result struct {
				CorrelationID string    `json:"correlation_id"`
				Deadline      time.Time `json:"deadline"`
				HasDeadline   bool      `json:"has_deadline"`
			}
		}
		Expect(res.Decode(&out)).To(Succeed())
		Expect(out.Result.CorrelationID).To(Equal("cb-spec-1"))
		Expect(out.Result.HasDeadline).To(BeTrue())
		Expect(out.Result.Deadline).NotTo(BeTemporally(">", callDeadline))
		Expect(logs.Matching("inside the callback")).To(ContainElement(SatisfyAll(
			HaveKeyWithValue("correlation_id", "cb-spec-1"),
			HaveKeyWithValue("callback", "whoami_go"),
		)))
	})

	Describe("errors, both ways", func() {
		var rt *pyvisor.Runtime
		var logs *harness.Logs
		BeforeEach(func() {
			rt, logs = start(pool(1),
				pyvisor.WithCallback("lookup_user", pyvisor.Typed(lookupUser)),
				pyvisor.WithCallback("refuse", func(context.Context, json.RawMessage) (any, error) {
					return nil, fmt.Errorf("checking the order: %w", pyvisor.ErrInvalidArgument)
				}),
				pyvisor.WithCallback("explode", func(context.Context, json.RawMessage) (any, error) {
					var m map[string]int
					m["boom"]++ // a nil map: panics
					return nil, nil
				}),
			)
		})

		DescribeTable("a Go error reaches Python as GoError with its kind and message",
			func(name string, args any, kind, message string) {
				for _, tool := range []string{"call_go", "call_go_sync"} {
					out := callGo(rt, tool, name, args)
					Expect(out.Error).NotTo(BeNil(), tool)
					Expect(out.Error.Kind).To(Equal(kind), tool)
					Expect(out.Error.Message).To(ContainSubstring(message), tool)
					Expect(out.Error.Callback).To(Equal(name), tool)
				}
			},
			Entry("an unknown callback, at once, naming the registered ones", "nope", nil, "unknown_callback", "registered: explode, lookup_user, refuse"),
			Entry("arguments the typed callback cannot decode", "lookup_user", map[string]any{"id": "one"}, "invalid_argument", "cannot unmarshal"),
			Entry("an argument the typed callback does not know", "lookup_user", map[string]any{"id": 1, "extra": true}, "invalid_argument", `unknown field "extra"`),
			Entry("the function's own error", "lookup_user", map[string]any{"id": 99}, "error", "no user 99"),
			Entry("an error wrapping ErrInvalidArgument", "refuse", nil, "invalid_argument", "checking the order: invalid argument"),
			Entry("a panic, which the runtime survives", "explode", nil, "panic", "assignment to entry in nil map"),
		)

		It("hands a GoError the tool lets through to the Go caller as a *ToolError of type pyvisor_worker.GoError", func() {
			_, err := execute(rt, "call_go_unguarded", map[string]any{"name": "lookup_user", "args": map[string]int{"id": 42}})
			var te *pyvisor.ToolError
			Expect(errors.As(err, &te)).To(BeTrue(), "got %v", err)
			Expect(te.Type).To(Equal("pyvisor_worker.GoError"))
			Expect(te.Message).To(Equal("go callback 'lookup_user' failed (error): no user 42"))
			Expect(te.Traceback).To(ContainSubstring("call_go_unguarded"))
		})

		It("logs a panicking callback with its stack, and goes on serving", func() {
			Expect(callGo(rt, "call_go", "explode", nil).Error.Kind).To(Equal("panic"))
			Expect(logs.Matching("go callback panicked; python gets the error")).To(ContainElement(SatisfyAll(
				HaveKeyWithValue("callback", "explode"),
				HaveKeyWithValue("stack", ContainSubstring("callbacks_test.go")),
			)))
			Expect(callGo(rt, "call_go", "lookup_user", map[string]int{"id": 2}).Result).To(MatchJSON(`{"id":2,"name":"Grace"}`))
			Expect(stats(rt).Restarts).To(BeEmpty())
		})
	})
})

// blocking is a callback that waits for its context to end and reports how it ended.
func blocking(ended chan<- error) pyvisor.Callback {
	return func(ctx context.Context, _ json.RawMessage) (any, error) {
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	}
}

var _ = Describe("A Go callback whose Python call ends", Label("python"), func() {
	DescribeTable("has its context cancelled when the call's deadline passes; Python gets its cancellation and the caller DeadlineExceeded on time",
		func(tool string) {
			ended := make(chan error, 1)
			rt, logs := start(pool(1), pyvisor.WithCallback("block", blocking(ended)))
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			began := time.Now()
			_, err := rt.Execute(ctx, "default", tool, map[string]any{"name": "block"})
			Expect(err).To(MatchError(context.DeadlineExceeded))
			Expect(time.Since(began)).To(BeNumerically("<", 800*time.Millisecond), "the caller did not wait past its deadline")
			// Both sides hold the deadline: Go's own timer ends the ctx (DeadlineExceeded), or
			// Python's, a moment earlier, withdraws the callback (Canceled).
			Eventually(ended).Should(Receive(Or(MatchError(context.DeadlineExceeded), MatchError(context.Canceled))), "the Go function's ctx ended")
			Eventually(func() []map[string]any {
				return logs.Matching(tool + " block: the tool call was cancelled while the callback ran")
			}).ShouldNot(BeEmpty(), "Python saw the cancellation")
			Eventually(inFlight).WithArguments(rt).Should(BeZero())
			Expect(stats(rt).Restarts).To(BeEmpty())
		},
		Entry("from an async tool", "call_go"),
		Entry("from a sync tool", "call_go_sync"),
	)

	It("has its context cancelled when the caller cancels the call", func() {
		ended := make(chan error, 1)
		rt, _ := start(pool(1), pyvisor.WithCallback("block", blocking(ended)))
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(200 * time.Millisecond)
			cancel()
		}()
		_, err := rt.Execute(ctx, "default", "call_go", map[string]any{"name": "block"})
		Expect(err).To(MatchError(context.Canceled))
		Eventually(ended).Should(Receive(MatchError(context.Canceled)))
	})

	It("has its context cancelled when Python withdraws the callback, though the call goes on", func() {
		ended := make(chan error, 1)
		rt, _ := start(pool(1), pyvisor.WithCallback("block", blocking(ended)))
		res, err := execute(rt, "call_go_timeout", map[string]any{"name": "block", "seconds": 0.2})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.JSON).To(MatchJSON(`"timed out"`))
		Eventually(ended).Should(Receive(MatchError(context.Canceled)))
	})
})

var _ = Describe("A Go callback calling the runtime", Label("python"), func() {
	It("can call another pool, in the same correlation id", func() {
		var rt *pyvisor.Runtime
		cfg := pool(1)
		cfg.Pools = append(cfg.Pools, pyvisor.PoolConfig{Name: "other", Tools: []string{"pyvisor_worker.examples"}, Workers: 1})
		rt, _ = start(cfg, pyvisor.WithPoolCallback("default", "ask_other", func(ctx context.Context, _ json.RawMessage) (any, error) {
			res, err := rt.Execute(ctx, "other", "whoami", nil)
			return res.JSON, err
		}))
		ctx, cancel := context.WithTimeout(telemetry.WithCorrelationID(context.Background(), "cb-spec-2"), 10*time.Second)
		defer cancel()
		res, err := rt.Execute(ctx, "default", "call_go", map[string]any{"name": "ask_other"})
		Expect(err).NotTo(HaveOccurred())
		var out struct {
			Result struct {
				WorkerID      string `json:"worker_id"`
				CorrelationID string `json:"correlation_id"`
			}
		}
		Expect(res.Decode(&out)).To(Succeed())
		Expect(out.Result.WorkerID).To(Equal("other-0"))
		Expect(out.Result.CorrelationID).To(Equal("cb-spec-2"))
	})

	It("cannot deadlock a pool by calling back into it while it has no free slot: the call's deadline ends it, and the pool serves on", func() {
		var rt *pyvisor.Runtime
		rt, _ = start(pool(1), pyvisor.WithCallback("ask_self", func(ctx context.Context, _ json.RawMessage) (any, error) {
			res, err := rt.Execute(ctx, "default", "add", map[string]int{"a": 1, "b": 2})
			return res.JSON, err
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		began := time.Now()
		_, err := rt.Execute(ctx, "default", "call_go", map[string]any{"name": "ask_self"})
		Expect(err).To(MatchError(context.DeadlineExceeded))
		Expect(time.Since(began)).To(BeNumerically("<", time.Second))
		Eventually(inFlight).WithArguments(rt).Should(BeZero())
		Expect(execute(rt, "add", map[string]int{"a": 1, "b": 2})).To(HaveField("JSON", BeEquivalentTo("3")))
	})

	It("is served by a pool with a free slot for the inner call", func() {
		var rt *pyvisor.Runtime
		rt, _ = start(pool(1, func(p *pyvisor.PoolConfig) { p.MaxConcurrent = 2 }),
			pyvisor.WithCallback("ask_self", func(ctx context.Context, _ json.RawMessage) (any, error) {
				res, err := rt.Execute(ctx, "default", "add", map[string]int{"a": 1, "b": 2})
				return res.JSON, err
			}))
		Expect(callGo(rt, "call_go", "ask_self", nil).Result).To(MatchJSON("3"))
	})
})

var _ = Describe("Registering callbacks", func() {
	DescribeTable("Start refuses a registration it cannot serve, naming the problem",
		func(problem string, opts ...pyvisor.Option) {
			_, err := pyvisor.Start(context.Background(), pool(1), opts...)
			Expect(err).To(MatchError(pyvisor.ErrInvalidConfig))
			Expect(err).To(MatchError(ContainSubstring(problem)))
		},
		Entry("an empty name", "callback name is empty", pyvisor.WithCallback("", pyvisor.Typed(lookupUser))),
		Entry("a name with a space", "has spaces or control characters", pyvisor.WithCallback("look up", pyvisor.Typed(lookupUser))),
		Entry("a nil function", "its function is nil", pyvisor.WithCallback("lookup_user", nil)),
		Entry("a pool the config does not have", `no pool "nope"`, pyvisor.WithPoolCallback("nope", "lookup_user", pyvisor.Typed(lookupUser))),
		Entry("a name twice for one pool", `registered twice for pool "default"`,
			pyvisor.WithCallback("lookup_user", pyvisor.Typed(lookupUser)),
			pyvisor.WithPoolCallback("default", "lookup_user", pyvisor.Typed(lookupUser))),
	)
})
