package nd_test

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/pyvisor/pyvisor/nd"
)

func TestOfIsAViewAndValuesReadsItBack(t *testing.T) {
	data := []float32{1, 2, 3, 4, 5, 6}
	a, err := nd.Of(data, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if a.DType != nd.Float32 || a.Len() != 6 || len(a.Data) != 24 {
		t.Fatalf("got %v with %d bytes", a, len(a.Data))
	}
	if unsafe.Pointer(&a.Data[0]) != unsafe.Pointer(&data[0]) {
		t.Fatal("Of copied the data")
	}
	back, err := nd.Values[float32](a)
	if err != nil {
		t.Fatal(err)
	}
	if &back[0] != &data[0] || back[5] != 6 {
		t.Fatalf("Values did not view the data: %v", back)
	}
}

func TestOfRefusesAShapeThatDoesNotFit(t *testing.T) {
	if _, err := nd.Of([]int64{1, 2, 3}, 2, 2); !errors.Is(err, nd.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
}

func TestValuesRefusesTheWrongType(t *testing.T) {
	a, _ := nd.Of([]int32{1, 2})
	if _, err := nd.Values[float32](a); !errors.Is(err, nd.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
}

func TestValuesCopiesMisalignedData(t *testing.T) {
	raw := make([]byte, 17)
	raw[1] = 7 // element 0 of an int64 starting at byte 1, little-endian
	a := nd.Array{DType: nd.Int64, Shape: []int{2}, Data: raw[1:]}
	v, err := nd.Values[int64](a)
	if err != nil {
		t.Fatal(err)
	}
	if v[0] != 7 {
		t.Fatalf("got %v", v)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		a    nd.Array
		ok   bool
	}{
		{"scalar", nd.Array{DType: nd.Float64, Data: make([]byte, 8)}, true},
		{"empty dimension", nd.Array{DType: nd.Float64, Shape: []int{0, 3}}, true},
		{"unknown dtype", nd.Array{DType: "float8", Shape: []int{1}, Data: []byte{0}}, false},
		{"negative dimension", nd.Array{DType: nd.Uint8, Shape: []int{-1}}, false},
		{"float16 bits", nd.Array{DType: nd.Float16, Shape: []int{2}, Data: make([]byte, 4)}, true},
		{"arrow with no bytes", nd.Array{Format: nd.Arrow}, false},
		{"unknown format", nd.Array{Format: 9}, false},
		{"overflowing shape", nd.Array{DType: nd.Float64, Shape: []int{1 << 30, 1 << 30, 16, 3}}, false},
		{"overflow to zero", nd.Array{DType: nd.Uint8, Shape: []int{65536, 65536, 65536, 65536}}, false},
	} {
		if err := c.a.Check(); (err == nil) != c.ok {
			t.Errorf("%s: Check() = %v", c.name, err)
		}
	}
}

func TestBitsReadsFloat16(t *testing.T) {
	a := nd.Array{DType: nd.Float16, Shape: []int{1}, Data: []byte{0x00, 0x3c}} // 1.0
	bits, err := nd.Bits[uint16](a)
	if err != nil || bits[0] != 0x3c00 {
		t.Fatalf("got %v, %v", bits, err)
	}
	if _, err := nd.Bits[uint32](a); !errors.Is(err, nd.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
}
