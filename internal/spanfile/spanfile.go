// Package spanfile keeps a process's spans, Go's and its Python workers', as JSON lines
// in a file, so that another process can read the spans of several processes back as
// one trace (the cluster demo and specs: one trace across node processes).
package spanfile

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/spantree"
)

// Writer appends spans to a file, one JSON object a line. It is an
// sdktrace.SpanExporter for the Go spans, and Python takes the workers' (as
// pyvisor.WithPythonSpans' sink). Safe for concurrent use.
type Writer struct {
	service string
	mu      sync.Mutex
	f       *os.File
}

// Create creates (or truncates) path; service names the Go spans' service.
func Create(path, service string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("spanfile: %w", err)
	}
	return &Writer{service: service, f: f}, nil
}

// ExportSpans writes Go spans.
func (w *Writer) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]spantree.Span, len(spans))
	for i, s := range spans {
		out[i] = spantree.FromGo(s, w.service)
	}
	return w.write(out...)
}

// Python writes a span a Python worker ended, with attribute pyvisor.node set to the
// writer's service (the node whose worker it was).
func (w *Writer) Python(s bridge.PythonSpan) {
	span := spantree.FromPython(s)
	span.Attrs["pyvisor.node"] = w.service
	_ = w.write(span)
}

func (w *Writer) write(spans ...spantree.Span) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return errors.New("spanfile: closed")
	}
	for _, s := range spans {
		b, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("spanfile: %w", err)
		}
		if _, err := w.f.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("spanfile: %w", err)
		}
	}
	return nil
}

// Shutdown closes the file.
func (w *Writer) Shutdown(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// Read returns the spans of the files at paths (a file that does not exist has none),
// those of trace only when trace is not "".
func Read(trace string, paths ...string) ([]spantree.Span, error) {
	var out []spantree.Span
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("spanfile: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var s spantree.Span
			if json.Unmarshal(sc.Bytes(), &s) != nil { // a line cut short by a killed process
				continue
			}
			if trace == "" || s.Trace == trace {
				out = append(out, s)
			}
		}
		_ = f.Close()
	}
	return out, nil
}
