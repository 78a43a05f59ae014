package bridge

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
)

// cleanups undo a start's steps, the last first.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }

func (c cleanups) run() {
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

// command is the worker's command line and environment: its tools, where it serves (a
// socket in a directory of its own, or TCP with a fresh token), and its limits.
func (p *Process) command(undo *cleanups) (cmd *exec.Cmd, token string, err error) {
	cfg := p.cfg
	args := []string{"-m", "pyvisor_worker"}
	for _, m := range cfg.tools {
		args = append(args, "--tools", m)
	}
	env := make(map[string]string, len(cfg.env)+2)
	for k, v := range cfg.env {
		env[k] = v
	}
	// Every process the worker's tools start inherits the tag, so that what survives the
	// worker can be found and killed once it is gone (killTagged).
	p.tag = newToken()[:32]
	env[processTagEnv] = p.tag
	if cfg.tcp {
		token = newToken()
		env["PYVISOR_WORKER_TOKEN"] = token
		args = append(args, "--tcp")
	} else {
		dir, err := os.MkdirTemp(cfg.runtimeDir, "pyvisor-")
		if err != nil {
			return nil, "", fmt.Errorf("bridge: create socket directory: %w", err)
		}
		p.dir = dir
		undo.add(p.removeDir)
		sock := filepath.Join(dir, "worker.sock")
		if len(sock) > maxSocketPath {
			return nil, "", fmt.Errorf("bridge: socket path %q is longer than %d bytes: choose a shorter WithRuntimeDir", sock, maxSocketPath)
		}
		args = append(args, "--socket", sock, "--remove-socket-dir")
	}
	args = append(args,
		"--worker-id", cfg.workerID,
		"--parent-pid", strconv.Itoa(os.Getpid()),
		"--max-message-bytes", strconv.Itoa(cfg.maxMessageBytes),
		"--shutdown-grace", strconv.FormatFloat((cfg.stopTimeout/2).Seconds(), 'f', 3, 64),
	)
	cmd = exec.Command(cfg.python, args...)
	cmd.Env = WorkerEnv(env)
	cmd.Dir = cfg.dir
	return cmd, token, nil
}

// ends are the parent's ends of the worker's pipes.
type ends struct {
	stdout, stderr, records *os.File
	// child are the child's ends and the arenas' fds, closed once it is spawned.
	child []*os.File
}

// plumb gives the command its pipes (stdout for the handshake, stderr, and fd 3 for the
// worker's own log and span records, so nothing a tool prints can pass for one) and its
// shared-memory arenas (fds 4 and 5).
func (p *Process) plumb(cmd *exec.Cmd, undo *cleanups) (ends, error) {
	var e ends
	pipe := func(what string) (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err != nil {
			return nil, nil, fmt.Errorf("bridge: %s pipe: %w", what, err)
		}
		undo.add(func() { r.Close() })
		undo.add(func() { w.Close() })
		return r, w, nil
	}
	var stdoutW, stderrW, recordsW *os.File
	var err error
	if e.stdout, stdoutW, err = pipe("stdout"); err != nil {
		return e, err
	}
	if e.stderr, stderrW, err = pipe("stderr"); err != nil {
		return e, err
	}
	if e.records, recordsW, err = pipe("log"); err != nil {
		return e, err
	}
	cmd.Args = append(cmd.Args, "--log-fd", "3")
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = stdoutW, stderrW, []*os.File{recordsW}
	e.child = []*os.File{stdoutW, stderrW, recordsW}
	if p.arenas, err = openArenas(p.cfg.shared, p.cfg.workerID); err != nil {
		return e, err
	}
	if p.arenas != nil {
		undo.add(p.arenas.release)
		// fds 4 and 5: the input arena (read-only) and the output arena.
		cmd.Args = append(cmd.Args, p.arenas.args(p.cfg.shared, 4)...)
		cmd.ExtraFiles = append(cmd.ExtraFiles, p.arenas.inFile, p.arenas.out.File())
	}
	return e, nil
}

// spawn starts the process and the readers of its stderr and records. Whatever its
// outcome, the child's ends are closed here; on failure the parent's are too.
func (p *Process) spawn(cmd *exec.Cmd, e ends) error {
	outputDone := make(chan struct{})
	// A worker that dies at once is reaped only after the fields below are set: reaped
	// reads them (and kill(-0) would signal this very process group).
	spawned := make(chan struct{})
	err := spawn(cmd, func(error) {
		<-spawned
		p.reaped(cmd, outputDone)
	})
	for _, f := range e.child {
		f.Close()
	}
	p.arenas.spawned()
	if err != nil {
		return p.startError(spawnError(err), "", "")
	}
	p.pid = cmd.Process.Pid
	p.log = p.log.With().Int("pid", p.pid).Logger()
	p.stderr = newStderrForwarder(p.log, p.cfg.spanSink)
	close(spawned)
	var readers sync.WaitGroup
	readers.Go(func() {
		defer e.stderr.Close()
		p.stderr.run(e.stderr)
	})
	readers.Go(func() {
		defer e.records.Close()
		p.stderr.records(e.records)
	})
	go func() {
		readers.Wait()
		close(outputDone)
	}()
	return nil
}

// dial connects to the worker where its handshake said it serves, and opens its channel.
func (p *Process) dial(ctx context.Context, token string) error {
	cfg := p.cfg
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(cfg.maxMessageBytes+frameSlack),
			grpc.MaxCallSendMsgSize(cfg.maxMessageBytes+frameSlack),
		),
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCredentials(token)))
	}
	if _, off := cfg.tracerProvider.(tracenoop.TracerProvider); !off {
		// Client spans, and trace context into the worker's gRPC metadata. pyvisor
		// counts calls itself, so otelgrpc's own RPC metrics are not recorded; calls
		// in an unsampled trace carry their context only (unsampledHandler).
		traceHeartbeats := cfg.traceHeartbeats
		opts = append(opts, grpc.WithStatsHandler(unsampledHandler{prop: cfg.propagator, inner: otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(cfg.tracerProvider),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelgrpc.WithPropagators(cfg.propagator),
			otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
				// The channel's calls get spans of their own (callTracing), the stream none;
				// Describe is metadata (and the wait for the load phase, in "worker start").
				return !strings.HasSuffix(info.FullMethodName, "/Channel") && !strings.HasSuffix(info.FullMethodName, "/Describe") &&
					(traceHeartbeats || !strings.HasSuffix(info.FullMethodName, "/Heartbeat"))
			}),
		)}))
	}
	conn, err := grpc.NewClient(p.hs.Target(), opts...)
	if err != nil {
		return fmt.Errorf("dial %s: %w", p.hs.Target(), err)
	}
	p.conn = conn
	return p.openChannel(ctx)
}

// exitedWhileLoading is ErrExitedWhileLoading when the process exits within a moment
// (a failure after the handshake is the load's, whatever call it broke first), else err.
func (p *Process) exitedWhileLoading(err error) error {
	select {
	case <-p.done:
		return ErrExitedWhileLoading
	case <-time.After(stderrDrainWait + time.Second):
		return err
	}
}

// load waits for the load phase: the worker imports its tools modules after its
// handshake, and answers Describe once they are in. It fails when the process exits
// first (ErrExitedWhileLoading), after the load timeout (ErrLoadTimeout), or with ctx.
func (p *Process) load(ctx context.Context) error {
	if p.cfg.onLoading != nil {
		p.cfg.onLoading(p.pid)
	}
	lctx, cancel := context.WithTimeout(ctx, p.cfg.loadTimeout)
	defer cancel()
	described := make(chan error, 1)
	go func() {
		info, err := p.client.Describe(lctx)
		p.info = info
		described <- err
	}()
	select {
	case err := <-described:
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("loading its tools: %w", ctx.Err())
		case lctx.Err() != nil:
			return fmt.Errorf("%w: %v", ErrLoadTimeout, p.cfg.loadTimeout)
		}
		return p.exitedWhileLoading(fmt.Errorf("loading its tools: describe: %w", err))
	case <-p.done:
		return ErrExitedWhileLoading
	}
}
