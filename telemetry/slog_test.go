package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/rs/zerolog"
)

func TestSlogGroupsAndAttrs(t *testing.T) {
	var buf bytes.Buffer
	Slog(zerolog.New(&buf)).With("system", "actors").WithGroup("pid").Warn("actor failed", "id", "default-0", "n", 3)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("want one JSON line, got %q", buf.String())
	}
	want := map[string]any{"level": "warn", "message": "actor failed", "system": "actors", "pid.id": "default-0", "pid.n": float64(3)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, got[k], v, got)
		}
	}
}

func TestSlogWritesThroughZerolog(t *testing.T) {
	var buf bytes.Buffer
	log := Slog(zerolog.New(&buf).Level(zerolog.InfoLevel))
	log.Debug("hidden")
	log.With("system", "actors").WithGroup("pid").Warn("actor failed", "id", "default-0", "n", 3)
	buf.Reset()
	log.Error("dead letter", "message", "a late reply", "reason", errors.New("boom"))
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("want one JSON line, got %q", buf.String())
	}
	want := map[string]any{"level": "error", "message": "dead letter", "slog_message": "a late reply", "reason": "boom"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, got[k], v, got)
		}
	}
}
