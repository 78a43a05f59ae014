package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

const (
	maxLogLine    = 1 << 20 // longer stderr lines are cut
	tailLines     = 40
	tailLineBytes = 512
)

// stderrForwarder re-emits a worker's output through zerolog, one event per line, and
// keeps the last lines for error reports: its stderr (what user code prints, a traceback,
// a C extension's output) as plain text, its log pipe's JSON records with their level and
// fields.
type stderrForwarder struct {
	log   zerolog.Logger
	spans func(PythonSpan) // receives {"pyvisor_span": ...} lines; nil logs them

	mu      sync.Mutex
	tail    []string
	next    int
	failure failure // of the last record with an exception
}

func newStderrForwarder(log zerolog.Logger, spans func(PythonSpan)) *stderrForwarder {
	return &stderrForwarder{log: log, spans: spans, tail: make([]string, 0, tailLines)}
}

// run forwards r (the worker's stderr) until EOF: every line as plain text with
// stream=stderr, never parsed, whatever it looks like.
func (f *stderrForwarder) run(r io.Reader) { readLines(r, f.log, f.forward) }

// records forwards r (the worker's log pipe) until EOF: its JSON log records keep their
// level and fields, its span records go to the span sink.
func (f *stderrForwarder) records(r io.Reader) { readLines(r, f.log, f.record) }

// readLines calls each with every line of r (lines longer than maxLogLine are cut).
func readLines(r io.Reader, log zerolog.Logger, each func([]byte)) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(line)+len(chunk) <= maxLogLine {
			line = append(line, chunk...)
		}
		if err != nil {
			if len(line) > 0 {
				each(line)
			}
			if !errors.Is(err, io.EOF) {
				log.Debug().Err(err).Msg("reading worker output")
			}
			return
		}
		if isPrefix {
			continue
		}
		each(line)
		line = line[:0]
	}
}

func (f *stderrForwarder) forward(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return
	}
	f.remember(line)
	f.log.Info().Str("source", "python").Str("stream", "stderr").Msg(string(line))
}

func (f *stderrForwarder) record(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(line, &fields) != nil {
		f.remember(line)
		f.log.Warn().Str("source", "python").Msg("unreadable log record: " + string(line))
		return
	}
	if raw, ok := fields["pyvisor_span"]; ok && len(fields) == 1 {
		var span PythonSpan
		if f.spans != nil && json.Unmarshal(raw, &span) == nil {
			f.spans(span)
			return
		}
	}
	f.rememberRecord(fields, line)
	f.forwardJSON(fields)
}

// rememberRecord keeps a log record in the tail as a person reads it: its level and
// message, and its exception's traceback cut to the user's frames (the JSON line would be
// cut at tailLineBytes, before the user's file and line).
func (f *stderrForwarder) rememberRecord(fields map[string]json.RawMessage, line []byte) {
	var level, message, exception string
	_ = json.Unmarshal(fields["level"], &level)
	_ = json.Unmarshal(fields["message"], &message)
	_ = json.Unmarshal(fields["exception"], &exception)
	if message == "" && exception == "" {
		f.remember(line)
		return
	}
	f.remember([]byte(strings.ToUpper(level) + " " + message))
	if exception == "" {
		return
	}
	kept, fail := userTraceback(exception)
	for _, l := range kept {
		f.remember([]byte(l))
	}
	f.mu.Lock()
	f.failure = fail
	f.mu.Unlock()
}

// Failure is the last exception the worker logged, and where in the user's code.
func (f *stderrForwarder) Failure() failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failure
}

// reserved are the fields of a forwarded record that Go sets (the logger's own context:
// pool, slot, worker, pid) or reads itself: a record never overrides them, so no
// forwarded line has a duplicate key.
var reserved = map[string]bool{
	"level": true, "message": true, "time": true, "worker_id": true,
	"source": true, "stream": true, "pool": true, "slot": true, "worker": true, "pid": true,
}

func (f *stderrForwarder) forwardJSON(fields map[string]json.RawMessage) {
	var level, message string
	_ = json.Unmarshal(fields["level"], &level)
	_ = json.Unmarshal(fields["message"], &message)
	ev := f.log.WithLevel(pythonLevel(level))
	if ev == nil {
		return
	}
	ev = ev.Str("source", "python")
	for k, v := range fields {
		if reserved[k] {
			continue
		}
		if string(v) == `""` || string(v) == "null" {
			continue
		}
		ev = ev.RawJSON(k, v)
	}
	ev.Msg(message)
}

func pythonLevel(level string) zerolog.Level {
	switch strings.ToLower(level) {
	case "debug":
		return zerolog.DebugLevel
	case "warning", "warn":
		return zerolog.WarnLevel
	case "error", "critical":
		return zerolog.ErrorLevel
	default:
		return zerolog.InfoLevel
	}
}

func (f *stderrForwarder) remember(line []byte) {
	s := string(line)
	if len(s) > tailLineBytes {
		s = s[:tailLineBytes] + "…"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tail) < tailLines {
		f.tail = append(f.tail, s)
		return
	}
	f.tail[f.next] = s
	f.next = (f.next + 1) % tailLines
}

// Tail returns the last stderr lines, oldest first.
func (f *stderrForwarder) Tail() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tail) < tailLines {
		return strings.Join(f.tail, "\n")
	}
	out := make([]string, 0, tailLines)
	out = append(out, f.tail[f.next:]...)
	out = append(out, f.tail[:f.next]...)
	return strings.Join(out, "\n")
}
