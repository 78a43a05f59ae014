package harness

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// Logs is a concurrency-safe zerolog sink that specs read back as parsed JSON lines.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Lines returns every line logged so far; a line that is not JSON comes back as
// {"unparsed": line}.
func (l *Logs) Lines() []map[string]any {
	l.mu.Lock()
	text := l.buf.String()
	l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if json.Unmarshal([]byte(line), &m) != nil {
			m = map[string]any{"unparsed": line}
		}
		out = append(out, m)
	}
	return out
}

// Matching returns the lines whose message equals message.
func (l *Logs) Matching(message string) []map[string]any {
	var out []map[string]any
	for _, m := range l.Lines() {
		if m["message"] == message {
			out = append(out, m)
		}
	}
	return out
}

// DuplicateKeys lists, for every line logged so far that has a top-level key more than
// once (which parsing into a map would hide), the line and its repeated keys.
func (l *Logs) DuplicateKeys() []string {
	l.mu.Lock()
	text := l.buf.String()
	l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(text, "\n") {
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			continue
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			key, _ := tok.(string)
			if seen[key] {
				out = append(out, key+" in "+line)
			}
			seen[key] = true
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				break
			}
		}
	}
	return out
}
