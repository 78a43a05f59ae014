package bridge

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// channelEndGrace is how long a worker whose channel ended may take to exit on its own
// before it is killed as failed.
const channelEndGrace = time.Second

// processTagEnv names the environment variable that marks a worker's processes.
const processTagEnv = "PYVISOR_PROCESS_TAG"

// maxSocketPath is the longest Unix socket path Linux and macOS both accept.
const maxSocketPath = 103

// stderrDrainWait bounds how long the reaper waits for stderr to reach EOF after the
// process exited (a grandchild may still hold it open).
const stderrDrainWait = time.Second

// Process is one running Python worker. It is safe for concurrent use.
//
// The process runs in its own process group with a clean environment, and dies with the
// host: a parent-death signal (Linux) and the worker's own parent watchdog see to it.
// Stop ends it gracefully, then by force; an exit nobody asked for is reported by Done
// and Err as an *ExitError.
type Process struct {
	cfg    config
	pid    int
	dir    string // private socket directory; "" with TCP
	hs     Handshake
	log    zerolog.Logger
	stderr *stderrForwarder
	conn   *grpc.ClientConn
	client *Client

	done     chan struct{} // closed once the process is reaped
	exit     *ExitError    // how it ended; set before done closes
	crashed  bool          // it exited before anyone asked it to; set before done closes
	stopping atomic.Bool   // a graceful Stop (or an aborted start) is under way
	killing  atomic.Bool   // a Kill is under way
	gone     atomic.Bool   // reaped: its pid may belong to another process from now on

	arenas       *arenas               // shared memory; nil when off
	closeChannel context.CancelFunc    // ends the channel's stream; nil before it opens
	tag          string                // processTagEnv's value for this worker and what it starts
	info         Info                  // its Describe at the end of the load phase
	cause        atomic.Pointer[error] // why KillFor killed it

	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error
}

// Start spawns a worker and returns once it has completed its handshake and serves.
// On failure it returns a *StartError that carries the exit status, the tail of stderr
// and a hint, and leaves no process or socket behind.
func Start(ctx context.Context, opts ...Option) (*Process, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	ctx, span := cfg.tracerProvider.Tracer(instrumentation).Start(ctx, "worker start",
		trace.WithAttributes(attribute.String("pyvisor.worker", cfg.workerID)))
	defer span.End()
	p, err := start(ctx, cfg)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "worker did not start")
		return nil, err
	}
	span.SetAttributes(attribute.Int("process.pid", p.pid))
	return p, nil
}

// instrumentation names the bridge's tracer and meter.
const instrumentation = "github.com/pyvisor/pyvisor/bridge"

// start runs a worker's start in go-plugin's steps: the command and its environment
// (command), the pipes and shared memory it inherits (plumb), the spawn and the readers of
// its output (spawn), the handshake, and the dial. Each step that fails undoes what the
// steps before it set up, in one place.
func start(ctx context.Context, cfg config) (*Process, error) {
	p := &Process{cfg: cfg, done: make(chan struct{}), stopped: make(chan struct{})}
	p.log = cfg.logger.With().Str("worker", cfg.workerID).Logger()
	var undo cleanups
	cmd, token, err := p.command(&undo)
	if err != nil {
		undo.run()
		return nil, err
	}
	ends, err := p.plumb(cmd, &undo)
	if err != nil {
		undo.run()
		return nil, err
	}
	if err := p.spawn(cmd, ends); err != nil {
		undo.run()
		return nil, err
	}
	// From here on the process runs: abortStart kills and reaps it, and cleans up after.
	hs, err := p.handshake(ctx, ends.stdout)
	if err != nil {
		return nil, p.abortStart(err)
	}
	p.hs = hs
	if err := p.dial(ctx, token); err != nil {
		// A worker whose tools fail to load at once may be gone before its channel
		// opens: what ended it is the load, not the dial.
		return nil, p.abortStart(p.exitedWhileLoading(err))
	}
	if err := p.load(ctx); err != nil {
		return nil, p.abortStart(err)
	}
	p.log.Debug().Str("address", hs.Address).Msg("python worker serving")
	return p, nil
}

// openChannel opens the worker's Channel and its client, and watches the channel: one
// that breaks while nobody is stopping the worker is the worker failing, so its process
// group is killed, calls in flight fail with the exit (ErrWorkerCrashed) and whoever
// owns the process sees it exit.
func (p *Process) openChannel(ctx context.Context) error {
	raw := workerv1.NewWorkerServiceClient(p.conn)
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel) // the start is abandoned while opening
	stream, err := raw.Channel(sctx)
	if !stop() && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return fmt.Errorf("open channel: %w", err)
	}
	p.closeChannel = cancel
	var tracer trace.Tracer
	if _, off := p.cfg.tracerProvider.(tracenoop.TracerProvider); !off {
		tracer = p.cfg.tracerProvider.Tracer(instrumentation)
	}
	ch := newChannel(stream, p.cfg.maxMessageBytes, newCallbackServer(p.cfg, tracer))
	c := &Client{conn: p.conn, raw: raw, ch: ch, proc: p, traceHeartbeats: p.cfg.traceHeartbeats,
		grace: p.cfg.cancelGrace, stuck: p.cfg.stuck, shared: p.cfg.shared}
	if p.arenas != nil {
		c.in, c.out = p.arenas.in, p.arenas.out
	}
	ch.client = c
	ch.server.place = c.placeReply
	if tracer != nil {
		c.tracing = &callTracing{tracer: tracer, prop: p.cfg.propagator}
	}
	p.client = c
	go ch.write()
	go func() {
		err := ch.read()
		// A worker stopping on its own (an outside SIGTERM, say) ends its channel first:
		// give it a moment to exit, flushing its last records, before calling it failed.
		t := time.NewTimer(channelEndGrace)
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
		if p.stopping.Load() || p.killing.Load() || p.exited() {
			return
		}
		p.log.Error().Err(err).Msg("channel to the python worker broke; killing its process group")
		p.signalGroup(syscall.SIGKILL)
	}()
	return nil
}

type handshakeLine struct {
	line string
	err  error
}

// handshake waits for the first stdout line, then keeps draining stdout (a worker never
// writes there again; if one does, the lines are logged, not lost).
func (p *Process) handshake(ctx context.Context, stdout *os.File) (Handshake, error) {
	first := make(chan handshakeLine, 1)
	go func() {
		defer stdout.Close()
		r := bufio.NewReader(stdout)
		line, err := r.ReadString('\n')
		first <- handshakeLine{line, err}
		if err != nil {
			return
		}
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				p.log.Warn().Str("source", "python").Str("stream", "stdout").Msg(line)
			}
			if err != nil {
				return
			}
		}
	}()
	timer := time.NewTimer(p.cfg.handshakeTimeout)
	defer timer.Stop()
	select {
	case got := <-first:
		if got.err != nil && got.line == "" {
			return Handshake{}, ErrExitedBeforeHandshake
		}
		return ParseHandshake(got.line)
	case <-timer.C:
		return Handshake{}, fmt.Errorf("%w: no handshake line within %v", ErrHandshakeTimeout, p.cfg.handshakeTimeout)
	case <-ctx.Done():
		return Handshake{}, fmt.Errorf("waiting for handshake: %w", ctx.Err())
	}
}

// abortStart kills what was started and returns the *StartError for cause.
func (p *Process) abortStart(cause error) error {
	p.stopping.Store(true)
	if errors.Is(cause, ErrExitedBeforeHandshake) || errors.Is(cause, ErrExitedWhileLoading) {
		// stdout closed: the process is exiting; let the reaper record how.
		select {
		case <-p.done:
		case <-time.After(stderrDrainWait + time.Second):
		}
	}
	alreadyExited := p.exited()
	p.signalGroup(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	if p.conn != nil {
		p.conn.Close()
	}
	p.removeDir()
	exit := ""
	if p.exit != nil {
		exit = describeExit(p.exit.ExitCode, p.exit.Signal)
		if !alreadyExited {
			exit = "still running; killed"
		}
	}
	tail := p.stderr.Tail()
	return p.startError(cause, exit, tail)
}

func (p *Process) startError(cause error, exit, tail string) *StartError {
	code := 0
	if p.exit != nil && exit != "still running; killed" {
		code = p.exit.ExitCode
	}
	return &StartError{
		ExitCode: code,
		WorkerID: p.cfg.workerID,
		Python:   p.cfg.python,
		Err:      cause,
		Exit:     exit,
		Stderr:   tail,
		Hint:     startHint(cause, p.exit, tail, p.failure(), p.cfg),
	}
}

// failure is the last exception the worker logged (none before it has output).
func (p *Process) failure() failure {
	if p.stderr == nil {
		return failure{}
	}
	return p.stderr.Failure()
}

func spawnError(err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w: %w", ErrInterpreterNotFound, err)
	}
	return fmt.Errorf("spawn: %w", err)
}

// reaped records how the process ended and closes done. It runs on the spawning thread.
func (p *Process) reaped(cmd *exec.Cmd, outputDone <-chan struct{}) {
	// What the worker left in its group goes with it, at once: from now on its pid (the
	// group's id) may be reused, so nothing signals it any more after this.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	p.gone.Store(true)
	// Whatever the tools started that went elsewhere goes too: after an abrupt end
	// (os._exit, a native crash, an outside SIGKILL) the worker could not do it itself.
	killTagged(p.tag)
	select {
	case <-outputDone:
	case <-time.After(stderrDrainWait):
	}
	exit := &ExitError{PID: cmd.Process.Pid, ExitCode: -1}
	if st := cmd.ProcessState; st != nil {
		exit.ExitCode = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			exit.Signal = ws.Signal()
		}
	}
	if p.stderr != nil {
		exit.Stderr = p.stderr.Tail()
	}
	if cause := p.cause.Load(); cause != nil {
		exit.Cause = *cause
	}
	p.exit = exit
	p.crashed = !p.stopping.Load()
	// The arenas go with the process, but for the views of results callers still hold.
	p.arenas.release()
	if p.dir != "" && p.crashed {
		// The worker removes its socket on a clean exit; after a crash, nobody else will.
		p.removeDir()
	}
	close(p.done)
	if p.crashed {
		p.log.Warn().Int("exit_code", exit.ExitCode).Str("signal", signalName(exit.Signal)).Msg("python worker exited unexpectedly")
	}
}

func signalName(s syscall.Signal) string {
	if s == 0 {
		return ""
	}
	return s.String()
}

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// PID is the worker's process id (it is also its process group id).
func (p *Process) PID() int { return p.pid }

// WorkerID is the id the worker was started with.
func (p *Process) WorkerID() string { return p.cfg.workerID }

// Address is where the worker serves: a socket path, or 127.0.0.1:port with TCP.
func (p *Process) Address() string { return p.hs.Address }

// Client talks to this worker.
func (p *Process) Client() *Client { return p.client }

// Info is what the worker said of itself once its tools were loaded (its Describe).
func (p *Process) Info() Info { return p.info }

// CodeVersion names the tool code the worker loaded (Info().CodeVersion).
func (p *Process) CodeVersion() string { return p.info.CodeVersion }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until the process has exited (or ctx ends) and returns Err.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.Err()
	case <-ctx.Done():
		return fmt.Errorf("wait for worker %s: %w", p.cfg.workerID, ctx.Err())
	}
}

// Err is nil while the process runs or after a requested stop; after an exit nobody
// asked for (even if Stop or Kill came after it) it is an *ExitError
// (errors.Is(err, ErrWorkerCrashed)).
func (p *Process) Err() error {
	if !p.exited() || !p.crashed {
		return nil
	}
	return p.exit
}

// Stop ends the worker: a Shutdown RPC that lets in-flight calls finish, then SIGTERM to
// its process group, then SIGKILL once the stop timeout (or ctx's deadline, if sooner)
// has passed. It closes the connection and removes the socket directory. Stop is
// idempotent and safe to call concurrently; every caller waits for the same stop.
func (p *Process) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() {
		p.stopping.Store(true)
		go func() {
			p.stopErr = p.stop(ctx, false)
			close(p.stopped)
		}()
	})
	select {
	case <-p.stopped:
		return p.stopErr
	case <-ctx.Done():
		return fmt.Errorf("stop worker %s: %w", p.cfg.workerID, ctx.Err())
	}
}

// KillFor kills the worker's process group at once for cause, as a failure, not a stop:
// calls in flight fail with its *ExitError, which matches ErrWorkerCrashed and cause, and
// the process's exit says why (a memory limit, for one).
func (p *Process) KillFor(cause error) {
	p.cause.CompareAndSwap(nil, &cause)
	p.signalGroup(syscall.SIGKILL)
}

// Kill ends the worker at once with SIGKILL to its process group (OTP's brutal kill),
// then cleans up like Stop. It is for a worker that has failed: calls in flight fail
// with an *ExitError (ErrWorkerCrashed), and Err reports the kill. A graceful Stop under
// way is cut short: the kill is immediate whatever the process is doing, and Kill then
// waits for that stop to finish its clean-up.
func (p *Process) Kill(ctx context.Context) error {
	p.killing.Store(true)
	p.stopOnce.Do(func() {
		go func() {
			p.stopErr = p.stop(context.Background(), true)
			close(p.stopped)
		}()
	})
	p.signalGroup(syscall.SIGKILL)
	select {
	case <-p.stopped:
		return p.stopErr
	case <-ctx.Done():
		return fmt.Errorf("kill worker %s: %w", p.cfg.workerID, ctx.Err())
	}
}

func (p *Process) stop(ctx context.Context, brutal bool) error {
	deadline := time.Now().Add(p.cfg.stopTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if !brutal && !p.exited() {
		graceful := time.Now().Add(time.Until(deadline) / 2)
		sctx, cancel := context.WithDeadline(ctx, graceful)
		_, err := p.client.raw.Shutdown(sctx, &workerv1.ShutdownRequest{
			GraceMillis: uint32(max(time.Until(graceful).Milliseconds(), 1)),
		})
		cancel()
		if err == nil {
			p.waitExit(ctx, graceful)
		} else {
			p.log.Debug().Err(err).Msg("shutdown rpc failed; sending SIGTERM")
		}
		if !p.exited() {
			p.log.Info().Msg("python worker still running after shutdown; sending SIGTERM")
			p.signalGroup(syscall.SIGTERM)
			p.waitExit(ctx, deadline)
		}
	}
	if !p.exited() {
		if !brutal {
			p.log.Warn().Dur("stop_timeout", p.cfg.stopTimeout).Msg("python worker ignored shutdown and SIGTERM; killing its process group")
		}
		p.signalGroup(syscall.SIGKILL)
	}
	var err error
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("stop worker %s: process %d did not exit after SIGKILL", p.cfg.workerID, p.pid)
	}
	// A group still there (the worker outlived its SIGKILL's wait) goes now.
	p.signalGroup(syscall.SIGKILL)
	if p.closeChannel != nil {
		p.closeChannel()
	}
	if p.conn != nil {
		p.conn.Close()
	}
	p.removeDir()
	return err
}

// waitExit waits for the process to exit until deadline or ctx ends.
func (p *Process) waitExit(ctx context.Context, deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// signalGroup signals the worker's process group. A SIGKILL first kills every
// descendant of a worker still alive, wherever it is (see killDescendants).
func (p *Process) signalGroup(sig syscall.Signal) {
	if p.pid <= 0 || p.gone.Load() {
		return // reaped already killed what was left; the pid may be another's now
	}
	if sig == syscall.SIGKILL {
		killDescendants(p.pid)
	}
	_ = syscall.Kill(-p.pid, sig)
}

func (p *Process) removeDir() {
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}

// tokenCredentials attaches the worker's secret to every call (TCP transport only; the
// connection is to 127.0.0.1).
type tokenCredentials string

func (t tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{workerv1.Wire(workerv1.MetadataKey_METADATA_KEY_AUTHORIZATION): "Bearer " + string(t)}, nil
}

func (tokenCredentials) RequireTransportSecurity() bool { return false }
