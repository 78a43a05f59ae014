package bridge

import (
	"fmt"
	"math"
	"slices"

	"google.golang.org/grpc/codes"

	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/nd"
)

// checkArrays checks a call's arrays and describes them on the wire, in name order,
// without their bytes.
func checkArrays(op, tool string, arrays map[string]nd.Array) ([]*workerv1.Array, error) {
	if len(arrays) == 0 {
		return nil, nil
	}
	for name, a := range arrays {
		if name == "" {
			return nil, &CallError{Op: op, Tool: tool, Reason: ErrInvalidArgument, Detail: "an array needs a name (the keyword argument it fills)", Code: codes.InvalidArgument}
		}
		if err := a.Check(); err != nil {
			return nil, &CallError{Op: op, Tool: tool, Reason: ErrInvalidArgument, Detail: fmt.Sprintf("array %q: %v", name, err), Code: codes.InvalidArgument}
		}
	}
	return ArraysToWire(arrays), nil
}

// toWire is a's description on the wire, without its bytes.
func toWire(name string, a nd.Array) *workerv1.Array {
	w := &workerv1.Array{Name: name, Format: workerv1.ArrayFormat_ARRAY_FORMAT_TENSOR}
	if a.Format == nd.Arrow {
		w.Format = workerv1.ArrayFormat_ARRAY_FORMAT_ARROW
		return w
	}
	w.Dtype = string(a.DType)
	w.Shape = make([]uint64, len(a.Shape))
	for i, d := range a.Shape {
		w.Shape[i] = uint64(d)
	}
	return w
}

// fromWire is the Array a wire array describes over data, checked.
func fromWire(w *workerv1.Array, data []byte) (nd.Array, error) {
	a := nd.Array{Data: data}
	switch w.GetFormat() {
	case workerv1.ArrayFormat_ARRAY_FORMAT_TENSOR:
		a.Format, a.DType = nd.Tensor, nd.DType(w.GetDtype())
		a.Shape = make([]int, len(w.GetShape()))
		for i, d := range w.GetShape() {
			if d > math.MaxInt32 {
				return nd.Array{}, fmt.Errorf("array %q: dimension %d is too large", w.GetName(), d)
			}
			a.Shape[i] = int(d)
		}
	case workerv1.ArrayFormat_ARRAY_FORMAT_ARROW:
		a.Format = nd.Arrow
	default:
		return nd.Array{}, fmt.Errorf("array %q: unknown format %v", w.GetName(), w.GetFormat())
	}
	if err := a.Check(); err != nil {
		return nd.Array{}, fmt.Errorf("array %q: %w", w.GetName(), err)
	}
	return a, nil
}

// refs are the output-arena offsets a result names: its payload's and its arrays'.
func refs(r *workerv1.Result) []uint64 {
	var offs []uint64
	if ref := r.GetPayloadRef(); ref != nil {
		offs = append(offs, ref.GetOffset())
	}
	return arrayRefs(r.GetArrays(), offs)
}

// arrayRefs appends to offs the output-arena offsets of the arrays' data.
func arrayRefs(arrays []*workerv1.Array, offs []uint64) []uint64 {
	for _, a := range arrays {
		if ref := a.GetDataRef(); ref != nil {
			offs = append(offs, ref.GetOffset())
		}
	}
	return offs
}

// ArraysToWire describes arrays on the wire in name order, without their bytes (for
// messages between nodes).
func ArraysToWire(arrays map[string]nd.Array) []*workerv1.Array {
	names := make([]string, 0, len(arrays))
	for name := range arrays {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]*workerv1.Array, 0, len(names))
	for _, name := range names {
		out = append(out, toWire(name, arrays[name]))
	}
	return out
}

// ArrayFromWire is the checked Array a wire array describes over data.
func ArrayFromWire(w *workerv1.Array, data []byte) (nd.Array, error) { return fromWire(w, data) }
