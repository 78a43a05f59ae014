package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/internal/spantree"
	"github.com/pyvisor/pyvisor/telemetry"
)

// call runs one tool, in a pool of a -config file or in a one-worker pool of a module,
// and prints its result (a streaming tool's chunks, one per line), or its error with the
// Python traceback; with -trace, then the call's trace, Go and Python spans as one tree.
func call(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := flags("call", errOut)
	py := fs.String("python", "", "the worker interpreter (default: the config's, $PYVISOR_PYTHON, the nearest .venv, python3)")
	configFile := fs.String("config", "", "a pyvisor YAML or JSON config: the first argument names one of its pools")
	trace := fs.Bool("trace", false, "print the call's trace tree after it")
	timeout := fs.Duration("timeout", 30*time.Second, "the call's deadline")
	verbose := fs.Bool("v", false, "print the runtime's and the worker's log lines (stderr)")
	positional, err := parse(fs, args)
	if err != nil {
		return errUsage // the flag package has said why
	}
	if len(positional) < 2 || len(positional) > 3 {
		fmt.Fprintln(errOut, "usage: pyvisor call [-python P] [-config FILE] [-trace] [-timeout D] [-v] POOL-or-MODULE TOOL [JSON]")
		return errUsage
	}
	target, tool, argsJSON := positional[0], positional[1], "{}"
	if len(positional) == 3 {
		argsJSON = positional[2]
	}
	if !json.Valid([]byte(argsJSON)) {
		return fmt.Errorf("the arguments are not JSON: %s", argsJSON)
	}
	cfg, pool, err := callConfig(*configFile, target)
	if err != nil {
		return err
	}
	if *py != "" {
		cfg.Python = *py
	}

	log := zerolog.Nop()
	if *verbose {
		log = consoleLog(errOut)
	}
	opts := []pyvisor.Option{pyvisor.WithLogger(log)}
	var spans *traceSink
	if *trace {
		spans = newTraceSink()
		opts = append(opts, pyvisor.WithTracerProvider(spans.tp), pyvisor.WithPropagator(telemetry.Propagator()),
			pyvisor.WithPythonSpans(spans.python))
	}
	rt, err := pyvisor.Start(ctx, cfg, opts...)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(telemetry.WithCorrelationID(ctx, telemetry.NewCorrelationID()), *timeout)
	callErr := execute(cctx, rt, pool, tool, json.RawMessage(argsJSON), out)
	cancel()
	stopCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := rt.Stop(stopCtx); err != nil {
		fmt.Fprintf(errOut, "stopping: %v\n", err)
	}
	if spans != nil {
		_ = spans.tp.Shutdown(stopCtx)
		for _, line := range spans.render() {
			fmt.Fprintln(out, line)
		}
	}
	if callErr != nil {
		fmt.Fprintf(errOut, "error: %v\n", callErr)
		var te *pyvisor.ToolError
		if errors.As(callErr, &te) && te.Traceback != "" {
			fmt.Fprintf(errOut, "%s", te.Traceback)
		}
		return errFailed
	}
	return nil
}

// callConfig is the configuration a call runs in: the -config file's, calling its pool
// target, or one pool "default" of one worker serving module target.
func callConfig(file, target string) (pyvisor.Config, string, error) {
	if file == "" {
		return pyvisor.Config{Pools: []pyvisor.PoolConfig{{Name: "default", Tools: []string{target}, Workers: 1}}}, "default", nil
	}
	cfg, err := pyvisor.LoadConfig(file)
	if err != nil {
		return cfg, "", err
	}
	if _, ok := cfg.Pool(target); !ok {
		var names []string
		for _, p := range cfg.Pools {
			names = append(names, p.Name)
		}
		return cfg, "", fmt.Errorf("%s has no pool %q (pools: %s)", file, target, strings.Join(names, ", "))
	}
	return cfg, target, nil
}

// execute makes the call, and prints the result; a streaming tool is called as one.
func execute(ctx context.Context, rt *pyvisor.Runtime, pool, tool string, args json.RawMessage, out io.Writer) error {
	res, err := rt.Execute(ctx, pool, tool, args)
	if errors.Is(err, pyvisor.ErrWrongCallKind) {
		for chunk, err := range rt.Stream(ctx, pool, tool, args) {
			if err != nil {
				return err
			}
			fmt.Fprintln(out, string(chunk.JSON))
		}
		return nil
	}
	if err != nil {
		return err
	}
	if len(res.Payload) > 0 {
		fmt.Fprintf(out, "(%d bytes of payload)\n", len(res.Payload))
		return nil
	}
	fmt.Fprintln(out, string(res.JSON))
	return nil
}

// traceSink records the call's spans, Go's in memory and Python's as the workers hand
// them over.
type traceSink struct {
	tp       *sdktrace.TracerProvider
	recorder *tracetest.SpanRecorder
	mu       sync.Mutex
	py       []pyvisor.PythonSpan
}

func newTraceSink() *traceSink {
	r := tracetest.NewSpanRecorder()
	return &traceSink{recorder: r, tp: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r))}
}

func (t *traceSink) python(s pyvisor.PythonSpan) {
	t.mu.Lock()
	t.py = append(t.py, s)
	t.mu.Unlock()
}

// render is the tree of the call's trace: the trace of its API span.
func (t *traceSink) render() []string {
	var traceID string
	for _, s := range t.recorder.Ended() {
		if strings.HasPrefix(s.Name(), "execute ") || strings.HasPrefix(s.Name(), "stream ") {
			traceID = s.SpanContext().TraceID().String()
		}
	}
	var spans []spantree.Span
	for _, s := range t.recorder.Ended() {
		if s.SpanContext().TraceID().String() == traceID {
			spans = append(spans, spantree.FromGo(s, telemetry.DefaultServiceName))
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.py {
		if s.TraceID == traceID {
			spans = append(spans, spantree.FromPython(s))
		}
	}
	return spantree.Render(spans, "trace "+traceID)
}
