package workerv1

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Wire is the string v travels as, its (wire) option in worker.proto: a Reason in
// CallFailed.reason and the pyvisor-error trailer, a GoErrorKind in GoError.kind, a
// MetadataKey as the key itself. "" for a value without one (the UNSPECIFIED ones).
func Wire(v protoreflect.Enum) string {
	d := v.Descriptor().Values().ByNumber(v.Number())
	if d == nil {
		return ""
	}
	s, _ := proto.GetExtension(d.Options(), E_Wire).(string)
	return s
}

// ReasonOf is the Reason whose wire string is s: REASON_UNSPECIFIED for "" or a string
// no Reason has.
func ReasonOf(s string) Reason {
	values := Reason(0).Descriptor().Values()
	for i := range values.Len() {
		r := Reason(values.Get(i).Number())
		if s != "" && Wire(r) == s {
			return r
		}
	}
	return Reason_REASON_UNSPECIFIED
}
