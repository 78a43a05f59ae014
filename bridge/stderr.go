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

// stderrForwarder re-emits a worker's stderr through zerolog, one event per line, and
// keeps the last lines for error reports. JSON lines (the worker's logging) keep their
// level and fields; any other line (a traceback, a C extension's output, print) is
// forwarded as it is.
type stderrForwarder struct {
	log   zerolog.Logger
	spans func(PythonSpan) // receives {"pyvisor_span": ...} lines; nil logs them

	mu   sync.Mutex
	tail []string
	next int
}

func newStderrForwarder(log zerolog.Logger, spans func(PythonSpan)) *stderrForwarder {
	return &stderrForwarder{log: log, spans: spans, tail: make([]string, 0, tailLines)}
}

// run reads r until EOF.
func (f *stderrForwarder) run(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(line)+len(chunk) <= maxLogLine {
			line = append(line, chunk...)
		}
		if err != nil {
			if len(line) > 0 {
				f.forward(line)
			}
			if !errors.Is(err, io.EOF) {
				f.log.Debug().Err(err).Msg("reading worker stderr")
			}
			return
		}
		if isPrefix {
			continue
		}
		f.forward(line)
		line = line[:0]
	}
}

func (f *stderrForwarder) forward(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return
	}
	if line[0] == '{' {
		var fields map[string]json.RawMessage
		if json.Unmarshal(line, &fields) == nil {
			if raw, ok := fields["pyvisor_span"]; ok && len(fields) == 1 && f.spans != nil {
				var span PythonSpan
				if json.Unmarshal(raw, &span) == nil {
					f.spans(span)
					return
				}
			}
			f.remember(line)
			f.forwardJSON(fields)
			return
		}
	}
	f.remember(line)
	f.log.Info().Str("source", "python").Str("stream", "stderr").Msg(string(line))
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
		switch k {
		case "level", "message", "time", "worker_id":
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
