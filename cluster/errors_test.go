package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/pyvisor/pyvisor/actors"
	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/lifecycle"
)

func TestErrorsKeepTheirTypeAcrossNodes(t *testing.T) {
	for _, c := range errorCodes {
		sent := fmt.Errorf("pool p: %w", c.err)
		got := decodeError("b", "cid", encodeError(sent))
		if !errors.Is(got, c.err) {
			t.Errorf("%s: %v does not match %v", c.code, got, c.err)
		}
		var re *RemoteError
		if !errors.As(got, &re) || re.Node != "b" || re.Message != sent.Error() {
			t.Errorf("%s: %#v; want a RemoteError from b with the text", c.code, got)
		}
	}
	for _, err := range []error{context.DeadlineExceeded, lifecycle.ErrStopped, actors.ErrPoolSaturated, bridge.ErrWorkerCrashed} {
		if decoded := decodeError("b", "", encodeError(err)); !errors.Is(decoded, err) {
			t.Errorf("%v came back as %v", err, decoded)
		}
	}
}

func TestAToolErrorKeepsItsPythonFields(t *testing.T) {
	sent := fmt.Errorf("execute: %w", &bridge.ToolError{Tool: "parse", Type: "KeyError", Message: "'x'", Traceback: "Traceback ...", CorrelationID: "c1"})
	var te *bridge.ToolError
	if got := decodeError("b", "c1", encodeError(sent)); !errors.As(got, &te) {
		t.Fatalf("%v is no ToolError", got)
	}
	if *te != (bridge.ToolError{Tool: "parse", Type: "KeyError", Message: "'x'", Traceback: "Traceback ...", CorrelationID: "c1"}) {
		t.Errorf("ToolError %+v", *te)
	}
}

func TestAnUnknownErrorKeepsItsText(t *testing.T) {
	got := decodeError("b", "", encodeError(errors.New("disk on fire")))
	if got.Error() != "on node b: disk on fire" {
		t.Errorf("got %q", got)
	}
	if decodeError("b", "", nil) != nil || encodeError(nil) != nil {
		t.Error("no error must stay none")
	}
}
