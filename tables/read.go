package tables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/pyvisor/pyvisor/nd"
)

// ErrNotArrow: Read was given an nd.Array that is not an Arrow IPC stream.
var ErrNotArrow = errors.New("not an Arrow table")

// Read is the table an Arrow nd.Array holds (a tool's returned pyarrow.Table or
// RecordBatch). Its columns view a.Data with no copy, so they are valid as long as a.Data
// is: for a result viewed in shared memory (pyvisor.WithResultView), until the result's
// Release. Release the table when done with it.
func Read(a nd.Array) (t arrow.Table, err error) {
	defer func() { // arrow-go panics on some malformed metadata: a worker's bytes are not trusted
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("tables: %w: %v", ErrNotArrow, r)
		}
	}()
	if a.Format != nd.Arrow {
		return nil, fmt.Errorf("tables: %w: the array is a %s tensor", ErrNotArrow, a.DType)
	}
	r, err := ipc.NewReaderFromMessageReader(&messages{data: a.Data})
	if err != nil {
		return nil, fmt.Errorf("tables: %w: %w", ErrNotArrow, err)
	}
	defer r.Release()
	var batches []arrow.RecordBatch
	defer func() {
		for _, b := range batches {
			b.Release()
		}
	}()
	for r.Next() {
		b := r.RecordBatch()
		b.Retain()
		batches = append(batches, b)
	}
	if err := r.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("tables: %w: %w", ErrNotArrow, err)
	}
	return array.NewTableFromRecords(r.Schema(), batches), nil
}

// messages reads the IPC stream's messages in place: each body is a slice of data, not
// a copy (arrow-go's own stream reader copies every body).
type messages struct {
	data []byte
	pos  int
	msg  *ipc.Message
}

const continuation = 0xFFFFFFFF

func (m *messages) Message() (*ipc.Message, error) {
	if m.msg != nil {
		m.msg.Release()
		m.msg = nil
	}
	word := func() (uint32, error) {
		if len(m.data)-m.pos < 4 {
			return 0, io.ErrUnexpectedEOF
		}
		v := binary.LittleEndian.Uint32(m.data[m.pos:])
		m.pos += 4
		return v, nil
	}
	if m.pos == len(m.data) {
		return nil, io.EOF
	}
	n, err := word()
	if err != nil {
		return nil, err
	}
	if n == continuation {
		if n, err = word(); err != nil {
			return nil, err
		}
	}
	if n == 0 {
		return nil, io.EOF // end of stream
	}
	if int64(n) > int64(len(m.data)-m.pos) || n < 4 {
		return nil, fmt.Errorf("message metadata of %d bytes at %d overruns the stream", n, m.pos)
	}
	meta := memory.NewBufferBytes(m.data[m.pos : m.pos+int(n)])
	m.pos += int(n)
	probe := ipc.NewMessage(meta, memory.NewBufferBytes(nil))
	bodyLen := probe.BodyLen()
	probe.Release()
	if bodyLen < 0 || bodyLen > int64(len(m.data)-m.pos) {
		return nil, fmt.Errorf("message body of %d bytes at %d overruns the stream", bodyLen, m.pos)
	}
	body := memory.NewBufferBytes(m.data[m.pos : m.pos+int(bodyLen)])
	m.pos += int(bodyLen)
	m.msg = ipc.NewMessage(meta, body)
	return m.msg, nil
}

func (m *messages) Retain() {}

func (m *messages) Release() {
	if m.msg != nil {
		m.msg.Release()
		m.msg = nil
	}
}
