package nd

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalid: an Array whose description does not fit its bytes (unknown dtype, a
// shape whose product is not the data's length, a format it is not).
var ErrInvalid = errors.New("invalid array")

// Format is how an Array's bytes are laid out.
type Format int

const (
	// Tensor is a dense array of DType elements in C (row-major) order.
	Tensor Format = iota
	// Arrow is an Arrow table in the Arrow IPC streaming format.
	Arrow
)

func (f Format) String() string {
	switch f {
	case Tensor:
		return "tensor"
	case Arrow:
		return "arrow"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Array is a typed array or an Arrow table, as bytes and their description.
type Array struct {
	Format Format
	DType  DType // Tensor only
	Shape  []int // Tensor only; nil or empty is a scalar (one element)
	Data   []byte
	// Owner, when set, is what holds Data (a pool's shared-memory buffer): a call sending
	// the array holds it while the call runs, and sends Data in place, with no copy.
	Owner Owner
}

// Owner holds the memory of an Array's Data: Acquire takes a hold (false once the
// memory is gone), Release lets it go.
type Owner interface {
	Acquire() bool
	Release()
}

// Len is a tensor's element count, the product of its shape.
func (a Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Check says whether a's description fits its bytes.
func (a Array) Check() error {
	switch a.Format {
	case Arrow:
		if len(a.Data) == 0 {
			return fmt.Errorf("%w: an Arrow array with no bytes", ErrInvalid)
		}
		return nil
	case Tensor:
	default:
		return fmt.Errorf("%w: unknown format %v", ErrInvalid, a.Format)
	}
	if err := a.DType.Check(); err != nil {
		return err
	}
	n := a.DType.Size()
	for _, d := range a.Shape {
		if d < 0 {
			return fmt.Errorf("%w: negative dimension in shape %v", ErrInvalid, a.Shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return fmt.Errorf("%w: shape %v of %s overflows", ErrInvalid, a.Shape, a.DType)
		}
		n *= d
	}
	if want := a.Len() * a.DType.Size(); want != len(a.Data) {
		return fmt.Errorf("%w: shape %v of %s is %d bytes, the data %d", ErrInvalid, a.Shape, a.DType, want, len(a.Data))
	}
	return nil
}

// String describes a, not its data.
func (a Array) String() string {
	if a.Format == Arrow {
		return fmt.Sprintf("arrow(%d bytes)", len(a.Data))
	}
	return fmt.Sprintf("%s%v", a.DType, a.Shape)
}
