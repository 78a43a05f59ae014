package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pyvisor/pyvisor/bridge"
)

// Messages of an upgrade between a pool and one of its workers.
type (
	// upgradeWorker asks a worker to start a process of the code on disk beside the one
	// serving, warm it up, and serve from it (workerUpgraded), keeping the old one parked
	// for a rollback until finishUpgrade or rollbackUpgrade.
	upgradeWorker struct {
		seq    uint64 // the upgrade's: the worker's answers carry it
		label  string
		bridge []bridge.Option // nil: the slot's current ones
	}
	// warmedUp: the warm-up call on the upgrade's new process is over.
	warmedUp struct {
		proc *bridge.Process
		err  error
	}
	// workerUpgraded tells the pool a slot serves from its new process.
	workerUpgraded struct {
		seq   uint64
		ready workerReady
	}
	// upgradeFailed tells the pool a slot's new process did not start or warm up; the
	// old one serves on.
	upgradeFailed struct {
		seq  uint64
		slot string
		err  error
	}
	// swapReady tells the pool a slot's new process is loaded and warm: the pool holds the
	// slot's sessions and answers swapNow once none of their calls runs.
	swapReady struct {
		seq  uint64
		slot string
	}
	// swapNow: serve from the new process, moving these sessions' state into it first.
	swapNow struct{ sessions []string }
	// sessionsMoved: the sessions' state is in the new process (or err says why not).
	sessionsMoved struct {
		proc     *bridge.Process
		sessions []string
		err      error
	}
	// finishUpgrade: the whole pool runs the new code; the parked process drains and stops.
	finishUpgrade struct{}
	// rollbackUpgrade: another slot failed; serve from the parked process again.
	rollbackUpgrade struct{}
)

// upgrade starts the new process; the current one serves on meanwhile. A worker with no
// process serving starts the new code the ordinary way.
func (w *worker) upgrade(ctx actor.Context, msg *upgradeWorker) {
	w.seq = msg.seq
	switch {
	case w.proc == nil || w.next != nil || w.warming != nil:
		ctx.Send(w.pool, &upgradeFailed{seq: w.seq, slot: w.slot, err: fmt.Errorf("worker %s is not serving", w.slot)})
		return
	case w.parked != nil:
		ctx.Send(w.pool, &upgradeFailed{seq: w.seq, slot: w.slot, err: fmt.Errorf("worker %s still keeps its old process for the last upgrade's sessions", w.slot)})
		return
	}
	w.nextLabel, w.nextInc, w.nextBridge = msg.label, incarnations.Add(1), msg.bridge
	if w.nextBridge == nil {
		w.nextBridge = w.bridge()
	}
	w.log.Info().Str("version", orHash(msg.label)).Msg("starting a python worker of the new code")
	w.next = w.spawn(ctx, msg.label, w.nextInc, w.nextBridge)
}

func orHash(label string) string {
	if label == "" {
		return "(hash of the code)"
	}
	return label
}

// nextStarted: the upgrade's process started, or did not.
func (w *worker) nextStarted(ctx actor.Context, msg *processStarted) {
	w.next = nil
	if msg.err != nil {
		w.log.Error().Err(msg.err).Msg("the new code's python worker did not start; the old one serves on")
		ctx.Send(w.pool, &upgradeFailed{seq: w.seq, slot: w.slot, err: msg.err})
		return
	}
	w.warming = msg.proc
	up := w.spec.Upgrade
	if up.WarmUpTool == "" {
		w.warmedUp(ctx, &warmedUp{proc: msg.proc})
		return
	}
	system, self, p := ctx.ActorSystem(), ctx.Self(), msg.proc
	go func() {
		wctx, cancel := context.WithTimeout(context.Background(), up.WarmUpTimeout)
		defer cancel()
		var args any
		if len(up.WarmUpArgs) > 0 {
			args = json.RawMessage(up.WarmUpArgs)
		}
		res, err := p.Client().Execute(wctx, bridge.Request{Tool: up.WarmUpTool, Args: args})
		res.Release()
		if err != nil {
			err = fmt.Errorf("warm-up call %s: %w", up.WarmUpTool, err)
		}
		system.Root.Send(self, &warmedUp{proc: p, err: err})
	}()
}

// warmedUp asks the pool for the swap, or lets the new process go.
func (w *worker) warmedUp(ctx actor.Context, msg *warmedUp) {
	if msg.proc != w.warming {
		return // let go of already (the worker restarted or stopped)
	}
	if msg.err != nil {
		w.warming = nil
		w.log.Error().Err(msg.err).Msg("the new code's python worker failed its warm-up; the old one serves on")
		w.retire(ctx, msg.proc, 0)
		ctx.Send(w.pool, &upgradeFailed{seq: w.seq, slot: w.slot, err: msg.err})
		return
	}
	ctx.Send(w.pool, &swapReady{seq: w.seq, slot: w.slot})
}

// swapNow moves the held sessions' state into the new process, then swaps.
func (w *worker) swapNow(ctx actor.Context, msg *swapNow) {
	next, old := w.warming, w.proc
	switch {
	case next == nil || old == nil:
		// Let go of (a restart, a recycle): the pool must hear, or it waits for ever.
		ctx.Send(w.pool, &upgradeFailed{seq: w.seq, slot: w.slot, err: fmt.Errorf("worker %s lost its process during the upgrade", w.slot)})
		return
	case exited(next):
		w.warming = nil
		ctx.Send(w.pool, &upgradeFailed{seq: w.seq, slot: w.slot, err: fmt.Errorf("the new code's process exited before it took a call: %w", next.Err())})
		return
	}
	if len(msg.sessions) == 0 {
		w.swap(ctx, &sessionsMoved{proc: next})
		return
	}
	system, self, ids := ctx.ActorSystem(), ctx.Self(), msg.sessions
	go func() {
		mctx, cancel := context.WithTimeout(context.Background(), w.spec.Upgrade.WarmUpTimeout)
		defer cancel()
		moved, err := moveSessions(mctx, old.Process, next, ids)
		system.Root.Send(self, &sessionsMoved{proc: next, sessions: moved, err: err})
	}()
}

// moveSessions copies each session's state from the old process into the new one, and
// returns the sessions it moved (one the old process never opened is not).
func moveSessions(ctx context.Context, from, to *bridge.Process, ids []string) ([]string, error) {
	moved := make([]string, 0, len(ids))
	for _, id := range ids {
		st, err := from.Client().ExportSession(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("move session %s: %w", id, err)
		}
		if !st.Existed {
			continue
		}
		if _, err := to.Client().ImportSession(ctx, id, st); err != nil {
			return nil, fmt.Errorf("move session %s: %w", id, err)
		}
		moved = append(moved, id)
	}
	return moved, nil
}

// swap serves from the new process, its sessions moved, or lets it go.
func (w *worker) swap(ctx actor.Context, msg *sessionsMoved) {
	if msg.proc != w.warming {
		return
	}
	w.warming = nil
	if msg.err != nil {
		w.log.Error().Err(msg.err).Msg("the sessions could not move to the new code; the old one serves on")
		w.retire(ctx, msg.proc, 0)
		ctx.Send(w.pool, &upgradeFailed{seq: w.seq, slot: w.slot, err: msg.err})
		return
	}
	old, oldStart := w.proc, w.procStart
	w.counters.setLabel(w.nextLabel)
	w.counters.setBridge(w.nextBridge)
	w.procStart = w.counters.start()
	w.stopHeartbeat(ctx)
	w.inc = w.nextInc // the old process's calls end as they are; its stuck bodies are its own
	w.serve(ctx, msg.proc, func(r workerReady) any {
		r.proc.opened(msg.sessions...) // their state is in it: no call opens them afresh
		return &workerUpgraded{seq: w.seq, ready: r}
	})
	w.parked, w.parkedStart = old, oldStart
}

// moveParked moves sessions pinned to the parked process into the serving one.
func (w *worker) moveParked(ctx actor.Context, msg *moveParked) {
	old, current, pool, slot := w.parked, w.proc, w.pool, w.slot
	if old == nil || current == nil {
		ctx.Send(pool, &parkedMoved{slot: slot, err: fmt.Errorf("worker %s has no old process to move sessions from", slot)})
		return
	}
	system, timeout := ctx.ActorSystem(), w.spec.Upgrade.WarmUpTimeout
	go func() {
		mctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		moved, err := moveSessions(mctx, old.Process, current.Process, msg.sessions)
		current.opened(moved...)
		system.Root.Send(pool, &parkedMoved{slot: slot, sessions: msg.sessions, err: err})
	}()
}

// finishUpgrade lets the parked process finish its calls, then stops it.
func (w *worker) finishUpgrade(ctx actor.Context) {
	if w.parked == nil {
		return
	}
	old := w.parked
	w.parked = nil
	w.retire(ctx, old.Process, w.spec.Upgrade.DrainTimeout, old.idle)
}

// rollback serves from the parked process again and lets the new one go.
func (w *worker) rollback(ctx actor.Context) {
	if w.warming != nil { // its warm-up will find it gone
		w.retire(ctx, w.warming, 0)
		w.warming = nil
	}
	if st := w.next; st != nil {
		if p := st.abandon(); p != nil {
			_ = p.Kill(context.Background())
		}
		w.next = nil
	}
	if w.parked == nil || w.parked.gone() {
		// Nothing to go back to (the worker restarted, or the old process died): a
		// process started with other than what the pool restored is replaced.
		w.parked = nil
		w.restartIfStale(ctx)
		return
	}
	current := w.proc
	// What the parked process started with is what its slot starts with again, whatever
	// a swap racing the rollback wrote.
	w.counters.setLabel(w.parkedStart.label)
	w.counters.bridge.Store(w.parkedStart.bridge)
	w.procStart = w.parkedStart
	w.stopHeartbeat(ctx)
	w.inc = incarnations.Add(1)
	w.serveLive(ctx, w.parked, func(r workerReady) any { return &r })
	w.parked = nil
	if current != nil {
		w.retire(ctx, current.Process, w.spec.Upgrade.DrainTimeout, current.idle)
	}
}

// restartIfStale replaces the worker's process, serving or starting, when it was started
// with other than what the slot starts with now (an upgrade rolled back, or a slot skipped
// while it restarted).
func (w *worker) restartIfStale(ctx actor.Context) {
	if w.procStart == w.counters.start() {
		return
	}
	switch {
	case w.proc != nil:
		w.recycle(ctx, "reconfigured")
	case w.starting != nil:
		if p := w.starting.abandon(); p != nil {
			_ = p.Kill(context.Background())
		}
		w.startProcess(ctx)
	}
}

// retire stops a process this worker no longer serves from, outside supervision: once
// idle (when given) or after drain, gracefully within the stop timeout.
func (w *worker) retire(ctx actor.Context, p *bridge.Process, drain time.Duration, idle ...func() <-chan struct{}) {
	if w.retiring == nil {
		w.retiring = map[*bridge.Process]bool{}
	}
	w.retiring[p] = true
	system, self, halt := ctx.ActorSystem(), ctx.Self(), w.spec.Halt
	var calls <-chan struct{}
	if len(idle) > 0 && drain > 0 {
		calls = idle[0]()
	}
	go func() {
		if calls != nil {
			select {
			case <-calls:
			case <-time.After(drain):
			case <-halt:
			}
		}
		sctx, cancel := w.stopContext() // after the drain: the calls still running get their grace
		defer cancel()
		_ = p.Stop(sctx)
		system.Root.Send(self, &retired{proc: p})
	}()
}

// dropUpgrade lets go of an upgrade's processes when the worker restarts or stops: the
// one starting and the one warming up at once; the parked one at once when the worker
// failed (brutal), else once its calls are over (within the stop timeout), gracefully.
func (w *worker) dropUpgrade(brutal bool) {
	if st := w.next; st != nil {
		if p := st.abandon(); p != nil {
			_ = p.Kill(context.Background())
		}
		<-st.over
		w.next = nil
	}
	if w.warming != nil {
		_ = w.warming.Kill(context.Background())
		w.warming = nil
	}
	if old := w.parked; old != nil {
		w.parked = nil
		if brutal {
			// The new code's process failed: the old one's calls are not its fault. They
			// finish (within the stop timeout) while the worker restarts.
			go func() {
				select {
				case <-old.idle():
				case <-time.After(w.spec.StopTimeout):
				case <-w.spec.Halt:
				}
				w.stopNow(old.Process)
			}()
			return
		}
		select {
		case <-old.idle():
		case <-time.After(w.spec.StopTimeout):
		case <-w.spec.Halt:
		}
		w.stopNow(old.Process)
	}
}

// exited says whether p has exited.
func exited(p *bridge.Process) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}
