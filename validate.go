package pyvisor

import (
	"fmt"

	"github.com/pyvisor/pyvisor/messages"
)

// Bounds on what a caller sends besides the arguments. They keep ids and metadata
// printable on every log line and span, and small enough to travel on every call.
const (
	MaxCorrelationIDLength = 128
	MaxSessionIDLength     = 128
	MaxToolNameLength      = 256
	MaxMetadataEntries     = 64
	MaxMetadataKeyLength   = 128
	MaxMetadataValueLength = 4096
)

// validate checks a call's correlation id, session id and metadata before it leaves Go:
// printable ASCII within the bounds above, else ErrInvalidArgument naming the problem
// (and not echoing the value).
func validate(correlationID string, call messages.Call) error {
	if err := printable("correlation id", correlationID, MaxCorrelationIDLength); err != nil {
		return err
	}
	if err := printable("session id", call.SessionID, MaxSessionIDLength); err != nil {
		return err
	}
	if len(call.Metadata) > MaxMetadataEntries {
		return fmt.Errorf("%w: %d metadata entries, at most %d", ErrInvalidArgument, len(call.Metadata), MaxMetadataEntries)
	}
	for k, v := range call.Metadata {
		if k == "" {
			return fmt.Errorf("%w: an empty metadata key", ErrInvalidArgument)
		}
		if err := printable("metadata key", k, MaxMetadataKeyLength); err != nil {
			return err
		}
		if err := printable(fmt.Sprintf("metadata %q", k), v, MaxMetadataValueLength); err != nil {
			return err
		}
	}
	return nil
}

func printable(what, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrInvalidArgument, what, len(s), limit)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: %s has byte %#02x at %d: only printable ASCII is allowed", ErrInvalidArgument, what, c, i)
		}
	}
	return nil
}

// toolName checks a tool name within MaxToolNameLength and without control characters (a
// Python name may be any Unicode letter): an error never echoes it.
func toolName(s string) error {
	if len(s) > MaxToolNameLength {
		return fmt.Errorf("%w: tool name is %d bytes, at most %d", ErrInvalidArgument, len(s), MaxToolNameLength)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: tool name has control byte %#02x at %d", ErrInvalidArgument, c, i)
		}
	}
	return nil
}
