package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/telemetry"
)

// callTimeout bounds every ordinary call of the scenario: none may hang the demo.
const callTimeout = 5 * time.Second

// scenario is what the demo does with a running pool: ordinary calls, a stream, a tool
// calling back into Go, typed errors, a session, an upgrade of the pool's code under load,
// then a crash and a hang that the runtime must detect and recover from, then calls
// served by the replacement workers.
type scenario struct {
	rt        *pyvisor.Runtime
	pool      string
	workers   int
	calls     int
	heartbeat bool
	log       zerolog.Logger
	tally     *tally
	tracer    trace.Tracer // the demo's own spans, around the calls it shows

	chunks   int            // stream chunks received
	pids     map[int]bool   // every Python process seen, checked gone after Stop
	replaced map[string]int // slot -> the pid it had before the faults
	upgraded upgradeReport
	final    pyvisor.PoolStats
}

func newScenario(rt *pyvisor.Runtime, cfg pyvisor.Config, calls int, log zerolog.Logger, tracer trace.Tracer) *scenario {
	pc := cfg.Pools[0]
	return &scenario{
		rt: rt, pool: pc.Name, workers: pc.Workers, calls: calls, heartbeat: pc.Heartbeat.Enabled,
		log: log, tally: newTally(), tracer: tracer, pids: map[int]bool{}, replaced: map[string]int{},
	}
}

// run plays every step in order. It returns an error only when it cannot go on (the
// demo was interrupted, the pool is unreachable); a step that did not go as expected is
// noted in the tally and the scenario continues.
func (s *scenario) run(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"calls", s.addCalls},
		{"stream", s.stream},
		{"callback into go", s.callback},
		{"typed errors", s.typedErrors},
		{"session", s.session},
		{"upgrade under load", s.upgrade},
		{"crash and hang", s.faults},
		{"serving again", s.servingAgain},
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.log.Info().Str("step", step.name).Msg("──── " + step.name)
		if err := step.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
	}
	st, err := s.stats(ctx)
	if err != nil {
		return err
	}
	s.final = st
	return nil
}

// execute makes one call, timed and counted.
func (s *scenario) execute(ctx context.Context, tool string, args any, opts ...pyvisor.CallOption) (pyvisor.Result, error) {
	began := time.Now()
	res, err := s.rt.Execute(ctx, s.pool, tool, args, opts...)
	s.tally.record(time.Since(began), err)
	return res, err
}

// addCalls makes s.calls add calls, as many at once as there are workers, and checks
// every sum.
func (s *scenario) addCalls(ctx context.Context) error {
	jobs := make(chan int)
	done := make(chan struct{})
	verbose := s.calls <= 50
	for range s.workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range jobs {
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				log, end := s.log, func() {}
				if i == 0 {
					// The first call is the one whose trace the demo prints: it has a
					// correlation id of the demo's choosing and runs inside a span of the
					// demo's own, so its log line carries both ids (telemetry.CallLogger).
					cctx = telemetry.WithCorrelationID(cctx, cidAdd)
					var span trace.Span
					cctx, span = s.tracer.Start(cctx, "demo add", trace.WithAttributes(attribute.String("pyvisor.correlation_id", cidAdd)))
					log, end = telemetry.CallLogger(cctx, s.log), func() { span.End() }
				}
				began := time.Now()
				res, err := s.execute(cctx, "add", map[string]int{"a": i, "b": 100})
				end()
				cancel()
				var sum int
				if err == nil {
					err = res.Decode(&sum)
				}
				if !s.tally.expect(err == nil && sum == i+100, fmt.Sprintf("add(%d, 100) returned %d, %v", i, sum, err)) {
					log.Error().Err(err).Int("a", i).Int("sum", sum).Msg("add went wrong")
				} else if i == 0 {
					log.Info().Int("a", i).Int("b", 100).Int("sum", sum).Stringer("took", round(time.Since(began))).
						Msg("add (this line carries the call's correlation_id, trace_id and span_id: telemetry.CallLogger)")
				} else if verbose {
					log.Info().Int("a", i).Int("b", 100).Int("sum", sum).Stringer("took", round(time.Since(began))).Msg("add")
				}
			}
		}()
	}
	for i := range s.calls {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	for range s.workers {
		<-done
	}
	s.log.Info().Int("calls", s.calls).Stringer("p50", round(s.tally.percentile(50))).Msg("add calls done")
	return ctx.Err()
}

// stream reads a five-chunk stream in order.
func (s *scenario) stream(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(telemetry.WithCorrelationID(ctx, cidStream), callTimeout)
	defer cancel()
	var err error
	for res, e := range s.rt.Stream(cctx, s.pool, "count", map[string]any{"n": 5, "interval": 0.05}) {
		if e != nil {
			err = e
			break
		}
		var chunk struct{ I int }
		if e := res.Decode(&chunk); e != nil || chunk.I != s.chunks {
			s.tally.expect(false, fmt.Sprintf("stream chunk %d was %s", s.chunks, res.JSON))
		}
		s.log.Info().RawJSON("chunk", res.JSON).Msg("stream chunk")
		s.chunks++
	}
	s.tally.recordStream(err)
	s.tally.expect(err == nil && s.chunks == 5, fmt.Sprintf("the stream yielded %d chunks of 5, then %v", s.chunks, err))
	return ctx.Err()
}

// typedErrors shows a Python exception and an unknown tool coming back as typed errors.
func (s *scenario) typedErrors(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := s.execute(cctx, "raise", map[string]string{"message": "the widget is missing", "type": "KeyError"})
	var toolErr *pyvisor.ToolError
	if s.tally.expect(errors.As(err, &toolErr) && toolErr.Type == "KeyError", fmt.Sprintf("raise: want a *ToolError KeyError, got %v", err)) {
		s.log.Info().Str("type", toolErr.Type).Str("message", toolErr.Message).
			Str("correlation_id", toolErr.CorrelationID).Msg("a Python exception came back as *pyvisor.ToolError")
	}
	_, err = s.execute(cctx, "no_such_tool", nil)
	s.tally.expect(errors.Is(err, pyvisor.ErrUnknownTool), fmt.Sprintf("no_such_tool: want ErrUnknownTool, got %v", err))
	s.log.Info().Err(err).Bool("is_unknown_tool", errors.Is(err, pyvisor.ErrUnknownTool)).Msg("an unknown tool")
	return ctx.Err()
}

// session stores a value in a session and reads it back: both calls go to the worker
// holding the session.
func (s *scenario) session(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	const id = "demo-session"
	_, err := s.execute(cctx, "session_set", map[string]any{"key": "colour", "value": "teal"}, pyvisor.WithSession(id))
	var got string
	if err == nil {
		var res pyvisor.Result
		res, err = s.execute(cctx, "session_get", map[string]any{"key": "colour"}, pyvisor.WithSession(id))
		if err == nil {
			err = res.Decode(&got)
		}
	}
	s.tally.expect(err == nil && got == "teal", fmt.Sprintf("session: want teal back, got %q, %v", got, err))
	s.log.Info().Str("session", id).Str("colour", got).Err(err).Msg("a value kept in a session, read back")
	return ctx.Err()
}

// faults crashes one worker (its Python process exits mid-call) and wedges another (its
// event loop blocks, so heartbeats go unanswered), then waits until the runtime has
// replaced both.
func (s *scenario) faults(ctx context.Context) error {
	before, err := s.stats(ctx)
	if err != nil {
		return err
	}
	want := map[string]int{"crash": before.Restarts["crash"] + 1}
	if s.heartbeat {
		want["heartbeat"] = before.Restarts["heartbeat"] + 1
	}

	began := time.Now()
	crashed := make(chan struct{})
	go func() {
		cctx := telemetry.WithCorrelationID(ctx, cidCrash)
		cctx, cancel := context.WithTimeout(cctx, callTimeout)
		defer cancel()
		s.log.Warn().Str("correlation_id", cidCrash).Msg("calling crash: the worker's Python process will exit with code 70 in 0.5 s")
		_, err := s.execute(cctx, "crash", map[string]any{"after_seconds": 0.5, "code": 70})
		s.checkCrash(err)
		close(crashed)
	}()
	if s.heartbeat {
		if s.workers > 1 {
			// Let the crash call take its worker first, so the hang goes to another one.
			if err := s.awaitInFlight(ctx, 1); err != nil {
				return err
			}
		} else {
			// One worker: let it crash and come back before wedging it.
			<-crashed
			if _, err := s.awaitRecovery(ctx, map[string]int{"crash": want["crash"]}, before, began); err != nil {
				return err
			}
		}
		s.hang(ctx)
	} else {
		s.log.Warn().Msg("heartbeats are off in this configuration: skipping the hang (nothing would detect it)")
	}
	<-crashed
	_, err = s.awaitRecovery(ctx, want, before, began)
	return err
}

// checkCrash checks what the caller of crash got: its worker died mid-call.
func (s *scenario) checkCrash(err error) {
	s.tally.expect(errors.Is(err, pyvisor.ErrWorkerCrashed), fmt.Sprintf("crash: want ErrWorkerCrashed, got %v", err))
	s.log.Info().Err(err).Bool("is_worker_crashed", errors.Is(err, pyvisor.ErrWorkerCrashed)).
		Msg("the crash call's caller got a typed error at once")
}

// hang wedges a worker's event loop for a minute, with a 1 s deadline on the call: the
// caller gets its deadline error, and the worker's heartbeat must give up on it.
func (s *scenario) hang(ctx context.Context) {
	cctx := telemetry.WithCorrelationID(ctx, cidHang)
	cctx, cancel := context.WithTimeout(cctx, time.Second)
	defer cancel()
	s.log.Warn().Str("correlation_id", cidHang).Msg("calling hang with a 1 s deadline: the worker's event loop blocks, heartbeats go unanswered")
	_, err := s.execute(cctx, "hang", map[string]any{"seconds": 60})
	s.tally.expect(errors.Is(err, context.DeadlineExceeded), fmt.Sprintf("hang: want context.DeadlineExceeded, got %v", err))
	s.log.Info().Err(err).Bool("is_deadline_exceeded", errors.Is(err, context.DeadlineExceeded)).
		Msg("the hang call's caller got its deadline error; the heartbeat is on the wedged worker")
}

// servingAgain makes a few calls after the recovery, each served by one of the current
// Python processes.
func (s *scenario) servingAgain(ctx context.Context) error {
	st, err := s.stats(ctx)
	if err != nil {
		return err
	}
	current := map[int]bool{}
	for _, w := range st.Workers {
		current[w.PID] = true
	}
	for range 2 * s.workers {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		res, err := s.execute(cctx, "whoami", nil)
		cancel()
		var who struct {
			PID           int    `json:"pid"`
			WorkerID      string `json:"worker_id"`
			CorrelationID string `json:"correlation_id"`
		}
		if err == nil {
			err = res.Decode(&who)
		}
		if !s.tally.expect(err == nil && current[who.PID], fmt.Sprintf("whoami: want a current worker, got pid %d, %v", who.PID, err)) {
			continue
		}
		s.log.Info().Str("served_by", who.WorkerID).Int("pid", who.PID).Str("correlation_id", who.CorrelationID).Msg("whoami")
	}
	return ctx.Err()
}
