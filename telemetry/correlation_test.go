package telemetry

import (
	"context"
	"regexp"
	"testing"
)

func TestCorrelationID(t *testing.T) {
	ctx := context.Background()
	if got := CorrelationID(ctx); got != "" {
		t.Fatalf("empty context carries %q", got)
	}
	if got := CorrelationID(WithCorrelationID(ctx, "req-42")); got != "req-42" {
		t.Fatalf("got %q, want req-42", got)
	}
	a, b := NewCorrelationID(), NewCorrelationID()
	if a == b || !regexp.MustCompile(`^pv-[0-9a-f]{16}$`).MatchString(a) {
		t.Fatalf("ids %q and %q", a, b)
	}
}
