package workerv1_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pyvisor/pyvisor/messages/workerv1"
)

func TestEveryValueButUnspecifiedHasAWireStringAndReasonsRoundTrip(t *testing.T) {
	for _, e := range []protoreflect.Enum{workerv1.Reason(0), workerv1.GoErrorKind(0), workerv1.MetadataKey(0), workerv1.CancelReason(0)} {
		values := e.Descriptor().Values()
		for i := range values.Len() {
			v := values.Get(i)
			got := workerv1.Wire(e.Type().New(v.Number()))
			if (v.Number() == 0) != (got == "") {
				t.Errorf("%s: wire %q", v.FullName(), got)
			}
		}
	}
	if got := workerv1.Wire(workerv1.MetadataKey_METADATA_KEY_ERROR_REASON); got != "pyvisor-error" {
		t.Errorf("the error trailer is %q", got)
	}
	for _, r := range []workerv1.Reason{workerv1.Reason_REASON_UNKNOWN_TOOL, workerv1.Reason_REASON_INTERNAL} {
		if back := workerv1.ReasonOf(workerv1.Wire(r)); back != r {
			t.Errorf("%v -> %q -> %v", r, workerv1.Wire(r), back)
		}
	}
	if workerv1.ReasonOf("no such reason") != workerv1.Reason_REASON_UNSPECIFIED || workerv1.ReasonOf("") != workerv1.Reason_REASON_UNSPECIFIED {
		t.Error("an unknown string is no Reason")
	}
}

func BenchmarkWire(b *testing.B) {
	for b.Loop() {
		_ = workerv1.Wire(workerv1.MetadataKey_METADATA_KEY_AUTHORIZATION)
		_ = workerv1.ReasonOf("unknown_tool")
	}
}
