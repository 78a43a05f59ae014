package nd

import (
	"fmt"
	"unsafe"
)

// Elem is a Go type with a DType.
type Elem interface {
	bool | int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64 |
		float32 | float64 | complex64 | complex128
}

// DTypeOf is T's DType.
func DTypeOf[T Elem]() DType {
	var zero T
	switch any(zero).(type) {
	case bool:
		return Bool
	case int8:
		return Int8
	case int16:
		return Int16
	case int32:
		return Int32
	case int64:
		return Int64
	case uint8:
		return Uint8
	case uint16:
		return Uint16
	case uint32:
		return Uint32
	case uint64:
		return Uint64
	case float32:
		return Float32
	case float64:
		return Float64
	case complex64:
		return Complex64
	case complex128:
		return Complex128
	}
	panic(fmt.Sprintf("nd: no dtype for %T", zero)) // unreachable: Elem lists the cases
}

// Of is a tensor over data with no copy: shape defaults to one dimension of len(data).
// The Array shares data's memory, so data must not change while a call sends it.
func Of[T Elem](data []T, shape ...int) (Array, error) {
	if len(shape) == 0 {
		shape = []int{len(data)}
	}
	var zero T
	a := Array{Format: Tensor, DType: DTypeOf[T](), Shape: shape}
	if len(data) > 0 {
		a.Data = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), len(data)*int(unsafe.Sizeof(zero)))
	}
	if err := a.Check(); err != nil {
		return Array{}, err
	}
	return a, nil
}

// Values is a tensor's elements as a []T, a view of its Data with no copy when Data is
// aligned for T (shared memory always is), else a copy. The dtype must be T's.
func Values[T Elem](a Array) ([]T, error) {
	if err := a.Check(); err != nil {
		return nil, err
	}
	if want := DTypeOf[T](); a.DType != want {
		return nil, fmt.Errorf("%w: the array is %s, not %s", ErrInvalid, a.DType, want)
	}
	return view[T](a.Data), nil
}

// Bits is a tensor's elements as unsigned integers of their size (float16 as uint16),
// a view like Values.
func Bits[T uint8 | uint16 | uint32 | uint64](a Array) ([]T, error) {
	if err := a.Check(); err != nil {
		return nil, err
	}
	var zero T
	if a.DType.Size() != int(unsafe.Sizeof(zero)) {
		return nil, fmt.Errorf("%w: %s elements are %d bytes, not %d", ErrInvalid, a.DType, a.DType.Size(), unsafe.Sizeof(zero))
	}
	return view[T](a.Data), nil
}

func view[T any](data []byte) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if len(data) == 0 {
		return []T{}
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(data)))%unsafe.Alignof(zero) != 0 {
		out := make([]T, len(data)/size)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), len(data)), data)
		return out
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(data))), len(data)/size)
}
