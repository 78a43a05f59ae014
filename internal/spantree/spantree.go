// Package spantree renders the spans of one trace, Go's and Python's alike, as an
// indented tree of lines (the demo's and `pyvisor call -trace`'s trace output).
package spantree

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pyvisor/pyvisor/bridge"
)

// Span is one span of a trace, from either side.
type Span struct {
	Trace         string // the trace id
	ID, Parent    string // span ids; Parent "" for a root
	Name, Service string
	Start, End    time.Time
	Attrs         map[string]string
	Status        string         // UNSET, OK, ERROR or "ERROR: description"
	Events        map[string]int // event name -> count
	children      []*Span
}

// FromGo is a Go SDK span, of service.
func FromGo(s sdktrace.ReadOnlySpan, service string) Span {
	n := Span{
		Trace: s.SpanContext().TraceID().String(), ID: s.SpanContext().SpanID().String(), Name: s.Name(), Service: service,
		Start: s.StartTime(), End: s.EndTime(), Attrs: map[string]string{}, Events: map[string]int{},
	}
	if s.Parent().IsValid() {
		n.Parent = s.Parent().SpanID().String()
	}
	for _, kv := range s.Attributes() {
		n.Attrs[string(kv.Key)] = kv.Value.String()
	}
	for _, e := range s.Events() {
		n.Events[e.Name]++
	}
	switch st := s.Status(); st.Code {
	case codes.Error:
		n.Status = "ERROR"
		if st.Description != "" {
			n.Status += ": " + truncate(st.Description, 70)
		}
	case codes.Ok:
		n.Status = "OK"
	default:
		n.Status = "UNSET"
	}
	return n
}

// FromPython is a span a Python worker ended.
func FromPython(s bridge.PythonSpan) Span {
	n := Span{
		Trace: s.TraceID, ID: s.SpanID, Parent: s.ParentSpanID, Name: s.Name, Service: s.Service,
		Start: time.Unix(0, s.StartUnixNano), End: time.Unix(0, s.EndUnixNano),
		Attrs: map[string]string{}, Status: s.Status,
	}
	if s.StatusMessage != "" {
		n.Status += ": " + truncate(s.StatusMessage, 70)
	}
	for k, v := range s.Attributes {
		n.Attrs[k] = fmt.Sprint(v)
	}
	return n
}

// Render renders spans (one trace's) as head, then one line per span under its parent,
// siblings in start order; a span whose parent is not among them is a root.
func Render(spans []Span, head string) []string {
	nodes := map[string]*Span{}
	for i := range spans {
		n := spans[i]
		n.children = nil
		nodes[n.ID] = &n
	}
	var roots []*Span
	for _, n := range nodes {
		if p, ok := nodes[n.Parent]; ok && n.Parent != "" {
			p.children = append(p.children, n)
		} else {
			roots = append(roots, n)
		}
	}
	type row struct {
		indent string
		n      *Span
	}
	var rows []row
	var walk func(n *Span, prefix, branch string)
	walk = func(n *Span, prefix, branch string) {
		rows = append(rows, row{prefix + branch, n})
		slices.SortFunc(n.children, func(a, b *Span) int { return a.Start.Compare(b.Start) })
		for i, c := range n.children {
			next, more := prefix, i < len(n.children)-1
			switch branch {
			case "├─ ":
				next += "│  "
			case "└─ ":
				next += "   "
			}
			walk(c, next, map[bool]string{true: "├─ ", false: "└─ "}[more])
		}
	}
	slices.SortFunc(roots, func(a, b *Span) int { return a.Start.Compare(b.Start) })
	for _, r := range roots {
		walk(r, "  ", "")
	}
	width := 0
	for _, r := range rows {
		width = max(width, utf8.RuneCountInString(r.indent+r.n.Name))
	}
	lines := []string{head}
	for _, r := range rows {
		lines = append(lines, r.n.line(r.indent, width))
	}
	return lines
}

// keyAttrs are the attributes a tree line shows, as short names.
var keyAttrs = []struct{ key, short string }{
	{"pyvisor.tool", "tool"},
	{"pyvisor.callback", "callback"},
	{"pyvisor.worker", "worker"},
	{"messaging.destination.name", "mailbox"},
	{"process.pid", "pid"},
	{"pyvisor.restart.reason", "reason"},
	{"pyvisor.stream.chunks", "chunks"},
	{"pyvisor.queue.depth", "queue_depth"},
	{"rpc.grpc.status_code", "grpc_code"},
	{"pyvisor.correlation_id", "correlation_id"},
}

func (n *Span) line(indent string, width int) string {
	var b strings.Builder
	name := indent + n.Name
	pad := strings.Repeat(" ", max(width-utf8.RuneCountInString(name), 0))
	fmt.Fprintf(&b, "%s%s  %-15s %9v", name, pad, n.Service, Round(n.End.Sub(n.Start)))
	for _, k := range keyAttrs {
		if v, ok := n.Attrs[k.key]; ok && v != "" {
			fmt.Fprintf(&b, "  %s=%s", k.short, v)
		}
	}
	for _, e := range slices.Sorted(maps.Keys(n.Events)) {
		fmt.Fprintf(&b, "  %s×%d", e, n.Events[e])
	}
	fmt.Fprintf(&b, "  [%s]", n.Status)
	return b.String()
}

// Round rounds a duration for display: to the millisecond from a second, to 10 µs from
// a millisecond, else to the microsecond.
func Round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
