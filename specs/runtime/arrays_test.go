package runtime_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/nd"
	"github.com/pyvisor/pyvisor/tables"
)

// randomArray is a tensor of dtype and shape filled with random bytes (bools 0 or 1).
func randomArray(dtype nd.DType, shape ...int) nd.Array {
	a := nd.Array{DType: dtype, Shape: shape}
	a.Data = make([]byte, a.Len()*dtype.Size())
	_, _ = rand.Read(a.Data)
	if dtype == nd.Bool {
		for i := range a.Data {
			a.Data[i] &= 1
		}
	}
	return a
}

func decodeJSON(res pyvisor.Result) map[string]any {
	GinkgoHelper()
	var v map[string]any
	Expect(json.Unmarshal(res.JSON, &v)).To(Succeed())
	return v
}

var _ = Describe("Typed arrays beside the JSON", Label("python"), func() {
	var rt *pyvisor.Runtime
	var ctx context.Context
	BeforeEach(func() {
		rt, _ = start(pool(1))
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		DeferCleanup(cancel)
	})

	It("cross both ways as numpy arrays of every dtype and shape, byte-exact", func() {
		shapes := [][]int{{}, {0}, {7}, {3, 4, 5}, {256, 1024}} // the last one through shared memory
		for _, dtype := range []nd.DType{nd.Bool, nd.Int8, nd.Int16, nd.Int32, nd.Int64, nd.Uint8, nd.Uint16,
			nd.Uint32, nd.Uint64, nd.Float16, nd.Float32, nd.Float64, nd.Complex64, nd.Complex128} {
			for _, shape := range shapes {
				in := randomArray(dtype, shape...)
				res, err := rt.Execute(ctx, "default", "echo_array", nil, pyvisor.WithArray("x", in))
				Expect(err).NotTo(HaveOccurred(), "%s%v", dtype, shape)
				out, ok := res.Arrays[""]
				Expect(ok).To(BeTrue(), "a returned array is the whole result")
				Expect(out.DType).To(Equal(dtype))
				Expect(out.Shape).To(Equal(shape))
				Expect(bytes.Equal(out.Data, in.Data)).To(BeTrue(), "%s%v byte-exact", dtype, shape)
			}
		}
	})

	It("arrive read-only and in place: a large array in the pool's shared memory, a small one in the frame", func() {
		big, err := nd.Of(make([]float32, 1<<20), 1024, 1024)
		Expect(err).NotTo(HaveOccurred())
		res, err := rt.Execute(ctx, "default", "array_info", nil, pyvisor.WithArray("x", big))
		Expect(err).NotTo(HaveOccurred())
		Expect(decodeJSON(res)).To(Equal(map[string]any{"kind": "tensor", "dtype": "float32",
			"shape": []any{1024.0, 1024.0}, "writeable": false, "shared": true}))
		small, _ := nd.Of([]int64{1, 2, 3})
		res, err = rt.Execute(ctx, "default", "array_info", nil, pyvisor.WithArray("x", small))
		Expect(err).NotTo(HaveOccurred())
		Expect(decodeJSON(res)).To(HaveKeyWithValue("shared", false))
	})

	It("are filled in place in a Buffer and sent with no copy", func() {
		buf, err := rt.Alloc(ctx, "default", 4<<20)
		Expect(err).NotTo(HaveOccurred())
		defer buf.Release()
		a, err := buf.Array(nd.Float32, 1024, 1024)
		Expect(err).NotTo(HaveOccurred())
		values, err := nd.Values[float32](a)
		Expect(err).NotTo(HaveOccurred())
		for i := range values {
			values[i] = 0.5
		}
		res, err := rt.Execute(ctx, "default", "scale_array", map[string]any{"factor": 2, "label": "half"}, pyvisor.WithArray("x", a))
		Expect(err).NotTo(HaveOccurred())
		Expect(decodeJSON(res)).To(Equal(map[string]any{"label": "half", "sum": float64(1 << 19)}), "the JSON keys, without the arrays")
		scaled, err := nd.Values[float32](res.Arrays["scaled"])
		Expect(err).NotTo(HaveOccurred())
		Expect(scaled).To(HaveLen(1 << 20))
		Expect(scaled[0]).To(Equal(float32(1)))
		Expect(scaled[len(scaled)-1]).To(Equal(float32(1)))

		_, err = buf.Array(nd.Float32, 1024, 1023)
		Expect(err).To(MatchError(pyvisor.ErrInvalidArgument), "a shape must fit the buffer")
	})

	It("come back as views of the worker's memory with WithResultView, until Release", func() {
		in := randomArray(nd.Uint8, 8<<20)
		res, err := rt.Execute(ctx, "default", "echo_array", nil, pyvisor.WithArray("x", in), pyvisor.WithResultView())
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Equal(res.Arrays[""].Data, in.Data)).To(BeTrue())
		res.Release()
	})

	It("refuse an array that does not fit its description, or a name the JSON also has, as ErrInvalidArgument", func() {
		bad := nd.Array{DType: nd.Float32, Shape: []int{3}, Data: make([]byte, 8)}
		_, err := rt.Execute(ctx, "default", "echo_array", nil, pyvisor.WithArray("x", bad))
		Expect(err).To(MatchError(pyvisor.ErrInvalidArgument))
		Expect(err.Error()).To(ContainSubstring("is 12 bytes, the data 8"))

		ok, _ := nd.Of([]float64{1, 2})
		_, err = rt.Execute(ctx, "default", "scale_array", map[string]any{"x": 1, "factor": 2}, pyvisor.WithArray("x", ok))
		Expect(err).To(MatchError(pyvisor.ErrInvalidArgument))
		Expect(err.Error()).To(ContainSubstring("given twice"))

		_, err = rt.Execute(ctx, "default", "scale_array", map[string]any{"factor": 2}, pyvisor.WithArray("y", ok))
		Expect(err).To(MatchError(pyvisor.ErrInvalidArgument), "a name the tool has no parameter for")
	})

	It("match 32 concurrent large calls on one worker to their own callers", func() {
		var wg sync.WaitGroup
		failures := make(chan error, 32)
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer GinkgoRecover()
				in := make([]uint32, 1<<18) // 1 MiB, tagged with its caller
				for j := range in {
					in[j] = uint32(i)<<24 | uint32(j)
				}
				a, _ := nd.Of(in)
				res, err := rt.Execute(ctx, "default", "echo_array", nil, pyvisor.WithArray("x", a))
				if err != nil {
					failures <- err
					return
				}
				out, _ := nd.Values[uint32](res.Arrays[""])
				for j := range out {
					if out[j] != in[j] {
						failures <- fmt.Errorf("caller %d got element %d = %#x", i, j, out[j])
						return
					}
				}
			}()
		}
		wg.Wait()
		close(failures)
		Expect(failures).To(BeEmpty())
	})

	It("stream out of a generator, a frame per chunk", func() {
		n := 0
		for res, err := range rt.Stream(ctx, "default", "array_frames", map[string]int{"n": 12, "height": 480, "width": 640}) {
			Expect(err).NotTo(HaveOccurred())
			frame := res.Arrays[""]
			Expect(frame.Shape).To(Equal([]int{480, 640}))
			Expect(bytes.Count(frame.Data, []byte{byte(n)})).To(Equal(480*640), "frame %d", n)
			n++
		}
		Expect(n).To(Equal(12))
	})
})

var _ = Describe("Arrays in callbacks", Label("python"), func() {
	It("reach a Go callback as views beside its JSON, and its arrays reach Python", func() {
		var seen []float32
		double := func(ctx context.Context, raw json.RawMessage) (any, error) {
			x := pyvisor.CallbackArrays(ctx)["x"]
			values, err := nd.Values[float32](x)
			if err != nil {
				return nil, err
			}
			seen = append([]float32(nil), values[:3]...)
			out := make([]float32, len(values))
			for i, v := range values {
				out[i] = 2 * v
			}
			doubled, err := nd.Of(out)
			var note struct{ Note string }
			_ = json.Unmarshal(raw, &note)
			return map[string]any{"doubled": doubled, "note": note.Note}, err
		}
		rt, _ := start(pool(1), pyvisor.WithCallback("double", double))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := rt.Execute(ctx, "default", "call_go_array", map[string]any{"name": "double", "size": 1 << 20})
		Expect(err).NotTo(HaveOccurred())
		Expect(seen).To(Equal([]float32{0, 1, 2}))
		got := decodeJSON(res)
		Expect(got).To(HaveKeyWithValue("note", "ramp"))
		Expect(got).To(HaveKeyWithValue("shared", map[string]any{"doubled": true}), "the callback's array went through shared memory")
		doubled, err := nd.Values[float32](res.Arrays["doubled"])
		Expect(err).NotTo(HaveOccurred())
		Expect(doubled[1<<20-1]).To(Equal(float32(2 * (1<<20 - 1))))
	})
})

var _ = Describe("Arrow tables", Label("python"), func() {
	It("cross both ways with nulls and strings, read in place, beside JSON", func() {
		rt, _ := start(pool(1))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		schema := arrow.NewSchema([]arrow.Field{
			{Name: "id", Type: arrow.PrimitiveTypes.Int64},
			{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
			{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		}, nil)
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		defer b.Release()
		const rows = 50_000 // about 1.3 MB: through shared memory
		for i := range rows {
			b.Field(0).(*array.Int64Builder).Append(int64(i))
			if i%10 == 3 {
				b.Field(1).(*array.StringBuilder).AppendNull()
				b.Field(2).(*array.Float64Builder).AppendNull()
			} else {
				b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("ünïcode-%d", i))
				b.Field(2).(*array.Float64Builder).Append(float64(i) / 2)
			}
		}
		rec := b.NewRecordBatch()
		defer rec.Release()
		in, err := tables.FromRecord(rec)
		Expect(err).NotTo(HaveOccurred())

		res, err := rt.Execute(ctx, "default", "array_info", nil, pyvisor.WithArray("x", in))
		Expect(err).NotTo(HaveOccurred())
		Expect(decodeJSON(res)).To(Equal(map[string]any{"kind": "table", "rows": float64(rows),
			"columns": []any{"id", "name", "score"}, "nulls": []any{0.0, 5000.0, 5000.0}, "shared": true}))

		res, err = rt.Execute(ctx, "default", "echo_array", nil, pyvisor.WithArray("x", in), pyvisor.WithResultView())
		Expect(err).NotTo(HaveOccurred())
		defer res.Release()
		out, err := tables.Read(res.Arrays[""])
		Expect(err).NotTo(HaveOccurred())
		defer out.Release()
		Expect(out.Schema().Equal(schema)).To(BeTrue())
		Expect(out.NumRows()).To(Equal(int64(rows)))
		names := out.Column(1).Data().Chunk(0).(*array.String)
		scores := out.Column(2).Data().Chunk(0).(*array.Float64)
		Expect(names.Value(49_999)).To(Equal("ünïcode-49999"))
		Expect(names.IsNull(3)).To(BeTrue())
		Expect(scores.IsNull(13)).To(BeTrue())
		Expect(scores.Value(4)).To(Equal(2.0))
	})
})
