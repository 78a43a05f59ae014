package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func forwardAll(t *testing.T, input string) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	f := newStderrForwarder(zerolog.New(&buf).With().Str("worker", "w-0").Logger(), nil)
	f.run(strings.NewReader(input))
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("forwarded line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func TestForwardKeepsLevelAndFields(t *testing.T) {
	got := forwardAll(t, `{"time":"x","level":"warning","logger":"tools","message":"careful","correlation_id":"c-1","trace_id":"","chunks":3}`+"\n")
	if len(got) != 1 {
		t.Fatalf("got %d lines, want 1", len(got))
	}
	want := map[string]any{"level": "warn", "message": "careful", "logger": "tools", "correlation_id": "c-1",
		"chunks": float64(3), "source": "python", "worker": "w-0"}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("%s = %v, want %v", k, got[0][k], v)
		}
	}
	if _, ok := got[0]["trace_id"]; ok {
		t.Errorf("empty trace_id should be dropped, got %v", got[0])
	}
}

func TestForwardPlainLinesAndTail(t *testing.T) {
	input := "Traceback (most recent call last):\n  File \"x.py\"\r\n{not json\n\n"
	got := forwardAll(t, input)
	if len(got) != 3 {
		t.Fatalf("got %d lines, want 3: %v", len(got), got)
	}
	if got[0]["message"] != "Traceback (most recent call last):" || got[0]["stream"] != "stderr" || got[0]["level"] != "info" {
		t.Errorf("plain line forwarded as %v", got[0])
	}
	if got[2]["message"] != "{not json" {
		t.Errorf("broken JSON forwarded as %v", got[2])
	}
}

func TestTailKeepsTheLastLines(t *testing.T) {
	f := newStderrForwarder(zerolog.Nop(), nil)
	var in strings.Builder
	for i := range tailLines + 5 {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	f.run(strings.NewReader(in.String()))
	lines := strings.Split(f.Tail(), "\n")
	if len(lines) != tailLines || lines[0] != "line 5" || lines[tailLines-1] != fmt.Sprintf("line %d", tailLines+4) {
		t.Errorf("tail = first %q last %q (%d lines)", lines[0], lines[len(lines)-1], len(lines))
	}
}

func TestForwardCutsOverlongLines(t *testing.T) {
	long := strings.Repeat("x", maxLogLine+100)
	got := forwardAll(t, long+"\nnext\n")
	if len(got) != 2 || len(got[0]["message"].(string)) > maxLogLine || got[1]["message"] != "next" {
		t.Errorf("overlong line handling: %d lines", len(got))
	}
}

func TestSpanLinesGoToTheSink(t *testing.T) {
	var buf bytes.Buffer
	var spans []PythonSpan
	f := newStderrForwarder(zerolog.New(&buf), func(s PythonSpan) { spans = append(spans, s) })
	f.run(strings.NewReader(`{"pyvisor_span": {"name": "tool add", "start_unix_nano": 5}}` + "\n" + `{"level": "info", "message": "m"}` + "\n"))
	if len(spans) != 1 || spans[0].Name != "tool add" || spans[0].StartUnixNano != 5 {
		t.Errorf("spans = %+v", spans)
	}
	if strings.Contains(buf.String(), "pyvisor_span") || !strings.Contains(buf.String(), `"message":"m"`) {
		t.Errorf("log = %q", buf.String())
	}
	if strings.Contains(f.Tail(), "pyvisor_span") {
		t.Errorf("span lines do not belong in the stderr tail: %q", f.Tail())
	}
}
