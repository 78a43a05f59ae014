// Command clusternode is one pyvisor node for the cluster specs: a real OS process
// running pyvisor.Start with the cluster config it is given, driven by JSON lines on
// stdin (calls from this node, its members, its workers' pids, a graceful stop) and
// answering in JSON lines on stdout. Its spans (Go's and its Python workers') go to
// -spans as JSON lines, written as each ends, and its log lines to -log, so a spec can
// read them after the process is gone, even killed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/internal/spanfile"
	"github.com/pyvisor/pyvisor/specs/internal/clusterwire"
	"github.com/pyvisor/pyvisor/telemetry"
)

type (
	command = clusterwire.Command
	answer  = clusterwire.Answer
)

func main() {
	config := flag.String("config", "", "the node's pyvisor config (JSON or YAML)")
	spans := flag.String("spans", "", "file the node's spans go to")
	logPath := flag.String("log", "", "file the node's log lines go to")
	flag.Parse()
	if err := run(*config, *spans, *logPath); err != nil {
		fmt.Fprintln(os.Stderr, "clusternode:", err)
		os.Exit(1)
	}
}

func run(config, spans, logPath string) error {
	cfg, err := pyvisor.LoadConfig(config)
	if err != nil {
		return err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := zerolog.New(logFile).With().Timestamp().Logger().Level(zerolog.DebugLevel) // the runtime adds node
	sink, err := spanfile.Create(spans, cfg.Cluster.Node)
	if err != nil {
		return err
	}
	// The spans go to the file as each ends, and also wherever the OTEL_* variables say
	// (the e2e specs: a real Jaeger).
	tp, err := telemetry.TracerProvider(context.Background(), sdktrace.NewSimpleSpanProcessor(sink))
	if err != nil {
		return err
	}
	defer tp.Shutdown(context.Background())
	rt, err := pyvisor.Start(context.Background(), cfg, pyvisor.WithLogger(log), pyvisor.WithTracerProvider(tp),
		pyvisor.WithPropagator(telemetry.Propagator()), pyvisor.WithPythonSpans(sink.Python))
	if err != nil {
		return err
	}
	out := &output{enc: json.NewEncoder(os.Stdout)}
	out.send(answer{Ready: true, Node: rt.Node(), Metrics: rt.MetricsAddress()})
	tracer := tp.Tracer("clusternode")
	var calls sync.WaitGroup
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 64<<20)
	for in.Scan() {
		var c command
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			return fmt.Errorf("command %q: %w", in.Text(), err)
		}
		switch c.Op {
		case "call":
			calls.Add(1)
			go func() {
				defer calls.Done()
				out.send(call(rt, tracer, c))
			}()
		case "members":
			out.send(answer{ID: c.ID, Members: rt.Members()})
		case "pids":
			a := answer{ID: c.ID}
			stats, err := rt.Stats(context.Background())
			for _, st := range stats {
				for _, w := range st.Workers {
					if w.PID != 0 {
						a.PIDs = append(a.PIDs, w.PID)
					}
				}
			}
			if err != nil {
				a.Error = err.Error()
			}
			out.send(a)
		case "stop":
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := rt.Stop(ctx)
			cancel()
			calls.Wait()
			a := answer{ID: c.ID}
			if err != nil {
				a.Error = err.Error()
			}
			out.send(a)
			return nil
		}
	}
	// stdin closed: the spec is gone; stop.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rt.Stop(ctx)
}

// call runs one call from this node under a root span "client <tool>".
func call(rt *pyvisor.Runtime, tracer trace.Tracer, c command) answer {
	ctx := context.Background()
	if c.TimeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(c.TimeoutMS)*time.Millisecond)
		defer cancel()
	}
	if c.CID != "" {
		ctx = telemetry.WithCorrelationID(ctx, c.CID)
	}
	ctx, span := tracer.Start(ctx, "client "+c.Tool)
	defer span.End()
	a := answer{ID: c.ID, Trace: span.SpanContext().TraceID().String()}
	var opts []pyvisor.CallOption
	if c.Session != "" {
		opts = append(opts, pyvisor.WithSession(c.Session))
	}
	if c.Idempotent {
		opts = append(opts, pyvisor.Idempotent())
	}
	began := time.Now()
	var err error
	if c.Stream {
		for res, e := range rt.Stream(ctx, c.Pool, c.Tool, c.Args, opts...) {
			if e != nil {
				err = e
				break
			}
			a.Chunks = append(a.Chunks, res.JSON)
		}
	} else {
		var res pyvisor.Result
		var ran pyvisor.Ran
		res, err = rt.Execute(ctx, c.Pool, c.Tool, c.Args, append(opts, pyvisor.WithRan(&ran))...)
		a.Result, a.Worker = res.JSON, ran.Node+"/"+ran.Worker
	}
	a.TookMS = float64(time.Since(began).Microseconds()) / 1000
	if err != nil {
		a.Error, a.Kind = err.Error(), kind(err)
	}
	return a
}

// kind names the error's type for the spec.
func kind(err error) string {
	var te *pyvisor.ToolError
	switch {
	case errors.As(err, &te):
		return "tool_error:" + te.Type
	case errors.Is(err, pyvisor.ErrNodeLost):
		return "node_lost"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, pyvisor.ErrUnknownPool):
		return "unknown_pool"
	case errors.Is(err, pyvisor.ErrUnknownTool):
		return "unknown_tool"
	case errors.Is(err, pyvisor.ErrWorkerCrashed):
		return "worker_crashed"
	case errors.Is(err, pyvisor.ErrStopped):
		return "stopped"
	}
	return "other"
}

// output writes answers, one line each, from any goroutine.
type output struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *output) send(a answer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(a)
}
