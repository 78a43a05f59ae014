package supervision

import (
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

func TestAnEscalationNamesItsSupervisorWithoutItsAddress(t *testing.T) {
	e := &EscalationError{Supervisor: actor.NewPID("nonhost", "guardian/pool-default/workers"), Err: ErrIntensityExceeded}
	msg := e.Error()
	if strings.Contains(msg, "nonhost") || strings.Contains(msg, "Address") {
		t.Fatalf("an actor address in %q", msg)
	}
	if !strings.HasPrefix(msg, "supervisor pool-default/workers failed: ") {
		t.Fatalf("got %q", msg)
	}
}
