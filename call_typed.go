package pyvisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
)

// ErrDecode: a tool's result (or a chunk) does not decode into the Go type Call or
// CallStream was asked for; the call itself succeeded.
var ErrDecode = errors.New("result does not decode")

// Call runs tool in pool like rt.Execute and decodes its JSON result into a T:
//
//	sum, err := pyvisor.Call[int](ctx, rt, "default", "add", map[string]int{"a": 1, "b": 2})
//
// The errors are Execute's, or one matching ErrDecode (with the json error) when the
// result is not a T.
func Call[T any](ctx context.Context, rt *Runtime, pool, tool string, args any, opts ...CallOption) (T, error) {
	var v T
	res, err := rt.Execute(ctx, pool, tool, args, opts...)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(res.JSON, &v); err != nil {
		return v, fmt.Errorf("pyvisor: execute %s: %w into %T: %w", tool, ErrDecode, v, err)
	}
	return v, nil
}

// CallStream runs a streaming tool like rt.Stream and yields each chunk decoded into a
// T. A chunk that is not a T ends the sequence with an error matching ErrDecode, and
// the call (its Python generator is closed), as breaking out of the loop does.
func CallStream[T any](ctx context.Context, rt *Runtime, pool, tool string, args any, opts ...CallOption) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for res, err := range rt.Stream(ctx, pool, tool, args, opts...) {
			var v T
			if err != nil {
				yield(v, err)
				return
			}
			if err := json.Unmarshal(res.JSON, &v); err != nil {
				yield(v, fmt.Errorf("pyvisor: stream %s: %w into %T: %w", tool, ErrDecode, v, err))
				return
			}
			if !yield(v, nil) {
				return
			}
		}
	}
}
