package bridge

// PythonSpan is a span a worker ended and reported on stderr (see WithSpanSink): the
// Go form of the Python side's {"pyvisor_span": {...}} record.
type PythonSpan struct {
	Name          string         `json:"name"`
	TraceID       string         `json:"trace_id"`       // 32 hex digits
	SpanID        string         `json:"span_id"`        // 16 hex digits
	ParentSpanID  string         `json:"parent_span_id"` // "" for a root span
	Kind          string         `json:"kind"`           // SERVER, INTERNAL, ...
	StartUnixNano int64          `json:"start_unix_nano"`
	EndUnixNano   int64          `json:"end_unix_nano"`
	Status        string         `json:"status"` // UNSET, OK or ERROR
	StatusMessage string         `json:"status_message"`
	Attributes    map[string]any `json:"attributes"`
	Service       string         `json:"service"` // the worker's service.name
}
