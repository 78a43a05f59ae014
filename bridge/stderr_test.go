package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// forwardAll forwards input as the worker's stderr, or with records as its log pipe,
// and returns the lines logged, each checked to have no duplicate key.
func forwardAll(t *testing.T, input string, records bool) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	f := newStderrForwarder(zerolog.New(&buf).With().Str("pool", "p").Str("worker", "w-0").Int("pid", 42).Logger(), nil)
	if records {
		f.records(strings.NewReader(input))
	} else {
		f.run(strings.NewReader(input))
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("forwarded line is not JSON: %q", line)
		}
		if keys := duplicateKeys(t, line); len(keys) > 0 {
			t.Errorf("forwarded line has duplicate keys %v: %s", keys, line)
		}
		out = append(out, m)
	}
	return out
}

// duplicateKeys lists the top-level keys a JSON object has more than once.
func duplicateKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	seen, dups := map[string]bool{}, []string(nil)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		key := tok.(string)
		if seen[key] {
			dups = append(dups, key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return dups
}

func TestRecordsKeepTheirLevelAndFields(t *testing.T) {
	got := forwardAll(t, `{"time":"x","level":"warning","logger":"tools","message":"careful","correlation_id":"c-1","trace_id":"","chunks":3}`+"\n", true)
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

func TestRecordsNeverOverrideWhatGoSets(t *testing.T) {
	got := forwardAll(t, `{"level":"info","message":"m","source":"go","worker":"w-9","pid":1,"pool":"other","stream":"x","extra":"kept"}`+"\n", true)
	want := map[string]any{"source": "python", "worker": "w-0", "pid": float64(42), "pool": "p", "extra": "kept"}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("%s = %v, want %v", k, got[0][k], v)
		}
	}
	if _, ok := got[0]["stream"]; ok {
		t.Errorf("a record has no stream: %v", got[0])
	}
}

func TestStderrIsPlainTextWhateverItLooksLike(t *testing.T) {
	forged := `{"level":"error","message":"forged","source":"go","worker":"w-9","correlation_id":"someone-else"}`
	got := forwardAll(t, forged+"\n"+`{"pyvisor_span": {"name": "injected"}}`+"\n", false)
	if len(got) != 2 {
		t.Fatalf("got %d lines, want 2", len(got))
	}
	for i, line := range []string{forged, `{"pyvisor_span": {"name": "injected"}}`} {
		want := map[string]any{"message": line, "level": "info", "stream": "stderr", "source": "python", "worker": "w-0"}
		for k, v := range want {
			if got[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, got[i][k], v)
			}
		}
		if _, ok := got[i]["correlation_id"]; ok {
			t.Errorf("line %d was parsed: %v", i, got[i])
		}
	}
}

func TestForwardPlainLinesAndTail(t *testing.T) {
	input := "Traceback (most recent call last):\n  File \"x.py\"\r\n{not json\n\n"
	got := forwardAll(t, input, false)
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
	got := forwardAll(t, long+"\nnext\n", false)
	if len(got) != 2 || len(got[0]["message"].(string)) > maxLogLine || got[1]["message"] != "next" {
		t.Errorf("overlong line handling: %d lines", len(got))
	}
}

func TestSpanRecordsGoToTheSink(t *testing.T) {
	var buf bytes.Buffer
	var spans []PythonSpan
	f := newStderrForwarder(zerolog.New(&buf), func(s PythonSpan) { spans = append(spans, s) })
	f.records(strings.NewReader(`{"pyvisor_span": {"name": "tool add", "start_unix_nano": 5}}` + "\n" + `{"level": "info", "message": "m"}` + "\n"))
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
