package bridge

import (
	"bytes"
	"context"

	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/nd"
)

type arraysKey struct{}

// CallbackArrays are the arrays a callback's Python caller passed among its keyword
// arguments (ctx.call_go(name, image=array)), by name: a callback reads them from its
// ctx. Their Data is a view of the worker's memory, valid until the callback returns:
// copy what must outlive it.
func CallbackArrays(ctx context.Context) map[string]nd.Array {
	a, _ := ctx.Value(arraysKey{}).(map[string]nd.Array)
	return a
}

// callbackArrays reads a callback's argument arrays as views of the worker's output
// arena; release gives the regions back. A ref outside the arena is the worker breaking
// the wire contract.
func (c *Client) callbackArrays(msg *workerv1.Callback) (arrays map[string]nd.Array, release func(), err error) {
	if release, err = c.holdOut(arrayRefs(msg.GetArrays(), nil)); err != nil {
		return nil, func() {}, err
	}
	if arrays, err = c.outArrays(msg.GetArrays()); err != nil {
		release()
		return nil, func() {}, err
	}
	return arrays, release, nil
}

// splitArrays takes the arrays out of a callback's result: an nd.Array is the whole
// value (name ""), a map's nd.Array values are taken out by key; the rest is the JSON.
func splitArrays(v any) (any, map[string]nd.Array) {
	switch t := v.(type) {
	case nd.Array:
		return nil, map[string]nd.Array{"": t}
	case map[string]nd.Array:
		return map[string]any{}, t
	case map[string]any:
		var arrays map[string]nd.Array
		for k, e := range t {
			if a, ok := e.(nd.Array); ok {
				if arrays == nil {
					arrays = map[string]nd.Array{}
				}
				arrays[k] = a
			}
		}
		if arrays == nil {
			return v, nil
		}
		rest := make(map[string]any, len(t)-len(arrays))
		for k, e := range t {
			if _, ok := arrays[k]; !ok {
				rest[k] = e
			}
		}
		return rest, arrays
	}
	return v, nil
}

// placeReply puts the arrays of a callback's result where they travel to the worker, as
// a call's arguments go; held frees them.
func (c *Client) placeReply(ctx context.Context, name string, arrays map[string]nd.Array) ([]*workerv1.Array, func(), error) {
	wire, err := checkArrays("callback", name, arrays)
	if err != nil {
		return nil, nil, err
	}
	blobs := make([]blobIn, 0, len(wire))
	for _, w := range wire {
		a := arrays[w.GetName()]
		blobs = append(blobs, blobIn{data: a.Data, owner: a.Owner, set: func(inline []byte, ref *workerv1.SharedRef) {
			// The reply is serialized after the callback's argument arrays go back: inline
			// bytes that are a slice of one must not be read there.
			w.Data, w.DataRef = bytes.Clone(inline), ref
		}})
	}
	held, err := c.placeAll(ctx, "callback", name, blobs)
	if err != nil {
		return nil, nil, err
	}
	return wire, held, nil
}
