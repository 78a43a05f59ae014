package tables_test

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/pyvisor/pyvisor/nd"
	"github.com/pyvisor/pyvisor/tables"
)

func sample(t *testing.T) arrow.RecordBatch {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "n", Type: arrow.PrimitiveTypes.Int64},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for i := range 1000 {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		if i%3 == 1 {
			b.Field(1).(*array.StringBuilder).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append("ç" + string(rune('a'+i%26)))
		}
	}
	return b.NewRecordBatch()
}

func TestARecordRoundTripsWithNullsAndStringsReadInPlace(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	a, err := tables.FromRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if a.Format != nd.Arrow || a.Check() != nil {
		t.Fatalf("got %v", a)
	}
	table, err := tables.Read(a)
	if err != nil {
		t.Fatal(err)
	}
	defer table.Release()
	if table.NumRows() != 1000 || table.NumCols() != 2 {
		t.Fatalf("got %d rows, %d columns", table.NumRows(), table.NumCols())
	}
	n := table.Column(0).Data().Chunk(0).(*array.Int64)
	s := table.Column(1).Data().Chunk(0).(*array.String)
	if n.Value(999) != 999 || !s.IsNull(1) || s.Value(2) != "çc" || s.NullN() != 333 {
		t.Fatalf("values differ: %d %v %q %d", n.Value(999), s.IsNull(1), s.Value(2), s.NullN())
	}
	values := n.Data().Buffers()[1].Bytes()
	start := uintptr(unsafe.Pointer(&a.Data[0]))
	if at := uintptr(unsafe.Pointer(&values[0])); at < start || at >= start+uintptr(len(a.Data)) {
		t.Fatal("the column was copied, not read in place")
	}
}

func TestATableOfSeveralChunksRoundTrips(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	in := array.NewTableFromRecords(rec.Schema(), []arrow.RecordBatch{rec, rec})
	defer in.Release()
	a, err := tables.FromTable(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tables.Read(a)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	if out.NumRows() != 2000 || out.Column(0).Len() != 2000 {
		t.Fatalf("got %d rows", out.NumRows())
	}
}

func TestReadRefusesWhatIsNotAnArrowStream(t *testing.T) {
	rec := sample(t)
	defer rec.Release()
	good, _ := tables.FromRecord(rec)
	for name, a := range map[string]nd.Array{
		"a tensor":  {DType: nd.Uint8, Shape: []int{3}, Data: []byte{1, 2, 3}},
		"garbage":   {Format: nd.Arrow, Data: []byte{0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 1, 2, 3}},
		"truncated": {Format: nd.Arrow, Data: good.Data[:len(good.Data)/2]},
		"noise":     {Format: nd.Arrow, Data: append([]byte{0xff, 0xff, 0xff, 0xff, 64, 0, 0, 0}, make([]byte, 64)...)},
	} {
		if _, err := tables.Read(a); !errors.Is(err, tables.ErrNotArrow) {
			t.Errorf("%s: want ErrNotArrow, got %v", name, err)
		}
	}
}
