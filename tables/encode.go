package tables

import (
	"bytes"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/pyvisor/pyvisor/nd"
)

// FromRecord is rec as an Arrow nd.Array, to send with pyvisor.WithArray: the tool gets a
// pyarrow.Table of one batch.
func FromRecord(rec arrow.RecordBatch) (nd.Array, error) {
	return encode(rec.Schema(), func(w *ipc.Writer) error { return w.Write(rec) })
}

// FromTable is t as an Arrow nd.Array, to send with pyvisor.WithArray: the tool gets a
// pyarrow.Table with t's schema, columns and chunks.
func FromTable(t arrow.Table) (nd.Array, error) {
	return encode(t.Schema(), func(w *ipc.Writer) error {
		r := array.NewTableReader(t, -1)
		defer r.Release()
		for r.Next() {
			if err := w.Write(r.RecordBatch()); err != nil {
				return err
			}
		}
		return r.Err()
	})
}

func encode(schema *arrow.Schema, write func(*ipc.Writer) error) (nd.Array, error) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := write(w); err != nil {
		_ = w.Close()
		return nd.Array{}, fmt.Errorf("tables: %w", err)
	}
	if err := w.Close(); err != nil {
		return nd.Array{}, fmt.Errorf("tables: %w", err)
	}
	return nd.Array{Format: nd.Arrow, Data: buf.Bytes()}, nil
}
