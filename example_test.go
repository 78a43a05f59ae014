package pyvisor_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/telemetry"
)

// examples is a configuration of one pool serving pyvisor's example tools. The
// interpreter is $PYVISOR_PYTHON, else the nearest .venv (go tool task setup makes one).
func examples(workers int) pyvisor.Config {
	return pyvisor.Config{Pools: []pyvisor.PoolConfig{{
		Name:    "default",
		Tools:   []string{"pyvisor_worker.examples"},
		Workers: workers,
	}}}
}

// Start a pool of Python workers, run a tool, stop.
func ExampleStart() {
	ctx := context.Background()
	rt, err := pyvisor.Start(ctx, pyvisor.Config{Pools: []pyvisor.PoolConfig{{
		Name:    "default",
		Tools:   []string{"pyvisor_worker.examples"}, // modules with @tool functions
		Workers: 2,
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Stop(context.Background())

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // the deadline reaches Python
	defer cancel()
	res, err := rt.Execute(ctx, "default", "add", map[string]int{"a": 1, "b": 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	var sum int
	if err := res.Decode(&sum); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("1 + 2 =", sum)
	// Output: 1 + 2 = 3
}

// Read a streaming tool's chunks with range; breaking out early would cancel the call
// and close the Python generator.
func ExampleRuntime_Stream() {
	ctx := context.Background()
	rt, err := pyvisor.Start(ctx, examples(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Stop(context.Background())

	for chunk, err := range rt.Stream(ctx, "default", "count", map[string]int{"n": 3}) {
		if err != nil {
			fmt.Println("stream failed:", err)
			return
		}
		fmt.Println(string(chunk.JSON))
	}
	// Output:
	// {"i":0}
	// {"i":1}
	// {"i":2}
}

// A Python exception comes back as a *ToolError with its type, message and traceback;
// the worker keeps serving.
func ExampleToolError() {
	ctx := context.Background()
	rt, err := pyvisor.Start(ctx, examples(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Stop(context.Background())

	_, err = rt.Execute(ctx, "default", "raise", map[string]string{"type": "ValueError", "message": "no widget"})
	var toolErr *pyvisor.ToolError
	if errors.As(err, &toolErr) {
		fmt.Println(toolErr.Tool, "raised", toolErr.Type+":", toolErr.Message)
	}
	// Other failures are sentinels, matched with errors.Is.
	_, err = rt.Execute(ctx, "default", "no_such_tool", nil)
	fmt.Println(errors.Is(err, pyvisor.ErrUnknownTool))
	// Output:
	// raise raised ValueError: no widget
	// true
}

// Calls of one session go to the worker that holds the session's state.
func ExampleWithSession() {
	ctx := context.Background()
	rt, err := pyvisor.Start(ctx, examples(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Stop(context.Background())

	session := pyvisor.WithSession("user-42")
	if _, err := rt.Execute(ctx, "default", "session_set", map[string]string{"key": "colour", "value": "teal"}, session); err != nil {
		fmt.Println(err)
		return
	}
	res, err := rt.Execute(ctx, "default", "session_get", map[string]string{"key": "colour"}, session)
	if err != nil {
		fmt.Println(err)
		return
	}
	var colour string
	_ = res.Decode(&colour)
	fmt.Println(colour)
	// Output: teal
}

// A call carries the caller's correlation id (or a new one) into Python, where the
// tool's log lines and ctx.correlation_id show it.
func ExampleRuntime_Execute_correlationID() {
	ctx := context.Background()
	rt, err := pyvisor.Start(ctx, examples(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Stop(context.Background())

	ctx = telemetry.WithCorrelationID(ctx, "order-1234")
	res, err := rt.Execute(ctx, "default", "whoami", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	var who struct {
		CorrelationID string `json:"correlation_id"`
		WorkerID      string `json:"worker_id"`
	}
	_ = res.Decode(&who)
	fmt.Println(who.CorrelationID, who.WorkerID)
	// Output: order-1234 default-0
}

// A Python tool calls a Go function back by name: greet (pyvisor_worker.examples) runs
// user = ctx.call_go("lookup_user", id=user_id) and greets whoever Go returns. Typed
// decodes the keyword arguments into the callback's argument struct.
func ExampleWithCallback() {
	type user struct {
		Name string `json:"name"`
	}
	lookupUser := func(ctx context.Context, args struct {
		ID int `json:"id"`
	}) (user, error) {
		// ctx carries the Python call's correlation id, trace and deadline.
		if args.ID != 1 {
			return user{}, fmt.Errorf("no user %d", args.ID) // a GoError in Python
		}
		return user{Name: "Ada"}, nil
	}
	ctx := context.Background()
	rt, err := pyvisor.Start(ctx, examples(1), pyvisor.WithCallback("lookup_user", pyvisor.Typed(lookupUser)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Stop(context.Background())

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // bounds the callback too
	defer cancel()
	res, err := rt.Execute(ctx, "default", "greet", map[string]int{"user_id": 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(res.JSON))
	_, err = rt.Execute(ctx, "default", "greet", map[string]int{"user_id": 2})
	var toolErr *pyvisor.ToolError
	if errors.As(err, &toolErr) {
		fmt.Println(toolErr.Type+":", toolErr.Message)
	}
	// Output:
	// "Hello, Ada!"
	// pyvisor_worker.GoError: go callback 'lookup_user' failed (error): no user 2
}

// Call and CallStream decode results into Go types.
func ExampleCall() {
	ctx := context.Background()
	rt, err := pyvisor.Start(ctx, examples(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Stop(context.Background())

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sum, err := pyvisor.Call[int](ctx, rt, "default", "add", map[string]int{"a": 1, "b": 2})
	fmt.Println(sum, err)

	type tick struct{ I int }
	var ticks []int
	for t, err := range pyvisor.CallStream[tick](ctx, rt, "default", "count", map[string]int{"n": 3}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		ticks = append(ticks, t.I)
	}
	fmt.Println(ticks)

	_, err = pyvisor.Call[int](ctx, rt, "default", "echo", map[string]string{"value": "three"})
	fmt.Println(errors.Is(err, pyvisor.ErrDecode))
	// Output:
	// 3 <nil>
	// [0 1 2]
	// true
}
