package workerv1

import (
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// wires and reasons are read from the descriptors once, on first use (the descriptors
// are built by the generated code's init), and never written after: the wire strings of
// every value of the enums below, and the Reasons by their wire string.
var (
	wires = sync.OnceValue(func() map[protoreflect.FullName]string {
		return wireStrings(Reason(0), GoErrorKind(0), MetadataKey(0), CancelReason(0))
	})
	reasons = sync.OnceValue(reasonsByWire)
)

// Wire is the string v travels as, its (wire) option in worker.proto: a Reason in
// CallFailed.reason and the pyvisor-error trailer, a GoErrorKind in GoError.kind, a
// CancelReason in Cancel.reason, a MetadataKey as the key itself. "" for a value without
// one (the UNSPECIFIED ones).
func Wire(v protoreflect.Enum) string {
	d := v.Descriptor().Values().ByNumber(v.Number())
	if d == nil {
		return ""
	}
	if s, ok := wires()[d.FullName()]; ok {
		return s
	}
	return wireOption(d) // an enum this file does not cache
}

// ReasonOf is the Reason whose wire string is s: REASON_UNSPECIFIED for "" or a string
// no Reason has.
func ReasonOf(s string) Reason { return reasons()[s] }

func wireOption(d protoreflect.EnumValueDescriptor) string {
	s, _ := proto.GetExtension(d.Options(), E_Wire).(string)
	return s
}

func wireStrings(enums ...protoreflect.Enum) map[protoreflect.FullName]string {
	m := map[protoreflect.FullName]string{}
	for _, e := range enums {
		values := e.Descriptor().Values()
		for i := range values.Len() {
			m[values.Get(i).FullName()] = wireOption(values.Get(i))
		}
	}
	return m
}

func reasonsByWire() map[string]Reason {
	m := map[string]Reason{}
	values := Reason(0).Descriptor().Values()
	for i := range values.Len() {
		if s := wireOption(values.Get(i)); s != "" {
			m[s] = Reason(values.Get(i).Number())
		}
	}
	return m
}
