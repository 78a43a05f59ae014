package nd

import "fmt"

// DType is a tensor's element type, named as numpy names it. Elements are little-endian.
type DType string

// The element types that cross between Go and Python.
const (
	Bool       DType = "bool"
	Int8       DType = "int8"
	Int16      DType = "int16"
	Int32      DType = "int32"
	Int64      DType = "int64"
	Uint8      DType = "uint8"
	Uint16     DType = "uint16"
	Uint32     DType = "uint32"
	Uint64     DType = "uint64"
	Float16    DType = "float16" // no Go type: read its bits as uint16 with Bits
	Float32    DType = "float32"
	Float64    DType = "float64"
	Complex64  DType = "complex64"
	Complex128 DType = "complex128"
)

var sizes = map[DType]int{
	Bool: 1, Int8: 1, Uint8: 1,
	Int16: 2, Uint16: 2, Float16: 2,
	Int32: 4, Uint32: 4, Float32: 4,
	Int64: 8, Uint64: 8, Float64: 8, Complex64: 8,
	Complex128: 16,
}

// Size is the bytes of one element; 0 for a DType this package does not know.
func (d DType) Size() int { return sizes[d] }

// Check says whether d is a known DType.
func (d DType) Check() error {
	if sizes[d] == 0 {
		return fmt.Errorf("%w: unknown dtype %q (known: bool, int8..int64, uint8..uint64, float16, float32, float64, complex64, complex128)", ErrInvalid, string(d))
	}
	return nil
}
