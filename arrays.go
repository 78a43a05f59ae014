package pyvisor

import (
	"context"
	"fmt"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/nd"
)

// WithArray sends a as the keyword argument name, beside the call's JSON arguments (a
// name they also have is refused by the worker as ErrInvalidArgument). The tool gets a
// tensor as a read-only numpy array of its dtype and shape, an Arrow array as a
// pyarrow.Table. Large arrays travel through the pool's shared memory: copied there
// once, or sent in place when a is over a Buffer (see Buffer.Array). a.Data must not
// change until the call returns. Repeat it for more arrays.
func WithArray(name string, a nd.Array) CallOption {
	return func(c *callOptions) {
		if c.call.Arrays == nil {
			c.call.Arrays = map[string]nd.Array{}
		}
		c.call.Arrays[name] = a
	}
}

// Array is a tensor of dtype and shape over the buffer's bytes, to send WithArray with no
// copy: fill it through nd.Values or Bytes. The shape must fit the buffer exactly. A call
// sending it holds the buffer as WithBuffer does.
func (b *Buffer) Array(dtype nd.DType, shape ...int) (nd.Array, error) {
	a := nd.Array{Format: nd.Tensor, DType: dtype, Shape: shape, Data: b.Bytes()}
	if b.lease != nil {
		a.Owner = b.lease
	}
	if err := a.Check(); err != nil {
		return nd.Array{}, fmt.Errorf("pyvisor: %w: %w", ErrInvalidArgument, err)
	}
	return a, nil
}

// CallbackArrays are the arrays a callback's Python caller passed among its keyword
// arguments (ctx.call_go(name, image=array)), by name. Their Data is a view of the
// worker's memory, valid until the callback returns: copy what must outlive it. A
// callback returns arrays as an nd.Array (the whole result) or as nd.Array values of a
// map[string]any (beside its other keys, which go as JSON).
func CallbackArrays(ctx context.Context) map[string]nd.Array { return bridge.CallbackArrays(ctx) }
