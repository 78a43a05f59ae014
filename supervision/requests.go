package supervision

import (
	"github.com/asynkron/protoactor-go/actor"
)

// Requests from a Handle. Each carries a reply channel of capacity 1, so the
// supervisor never blocks answering and a caller can give up on its context.
type (
	reply struct {
		pid *actor.PID
		err error
		out any
	}
	startChildReq struct {
		spec  Child
		reply chan reply
	}
	terminateChildReq struct {
		id    string
		reply chan reply
	}
	restartChildReq struct {
		id    string
		reply chan reply
	}
	deleteChildReq struct {
		id    string
		reply chan reply
	}
	whichChildrenReq struct{ reply chan reply }
	countChildrenReq struct{ reply chan reply }
	stopReq          struct{ reason error }
)

// timer messages, sent to self by Clock callbacks.
type (
	stopTimeout struct {
		c   *child
		inc int
	}
	delayDone struct{ token int }
)

// ChildInfo describes one child (Supervisor.which_children).
type ChildInfo struct {
	ID           string
	PID          *actor.PID // nil when the child is not running
	Restart      Restart
	IsSupervisor bool
}

// Counts counts children (Supervisor.count_children).
type Counts struct {
	Specs       int // child specs, running or not
	Active      int // children running
	Supervisors int // specs of nested supervisors
	Workers     int // other specs
}
