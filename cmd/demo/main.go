// Command demo starts one Python worker through the bridge and shows what it can do:
// its tools, a few calls, a stream, a Python exception coming back typed, a deadline,
// and a clean stop. It exits non-zero if the scenario does not go as expected.
// Run it with `go tool task demo`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor/bridge"
)

func main() {
	logFormat := flag.String("log-format", "console", "console or json")
	calls := flag.Int("calls", 5, "how many add calls to make")
	flag.Parse()

	zerolog.TimeFieldFormat = time.RFC3339Nano
	var log zerolog.Logger
	switch *logFormat {
	case "console":
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).With().Timestamp().Logger()
	case "json":
		log = zerolog.New(os.Stderr).With().Timestamp().Logger()
	default:
		fmt.Fprintf(os.Stderr, "demo: -log-format must be console or json, got %q\n", *logFormat)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *calls); err != nil {
		log.Error().Err(err).Msg("demo failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, log zerolog.Logger, calls int) error {
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	began := time.Now()
	p, err := bridge.Start(startCtx,
		bridge.WithTools("pyvisor_worker.examples"),
		bridge.WithWorkerID("demo-0"),
		bridge.WithLogger(log),
	)
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Stop(stopCtx); err != nil {
			log.Error().Err(err).Msg("stop")
			return
		}
		log.Info().Int("pid", p.PID()).Msg("worker stopped; its process group and socket are gone")
	}()
	log.Info().Int("pid", p.PID()).Str("socket", p.Address()).Dur("startup", time.Since(began)).Msg("worker ready")

	info, err := p.Client().Describe(ctx)
	if err != nil {
		return err
	}
	for _, t := range info.Tools {
		log.Info().Str("tool", t.Name).Bool("streaming", t.Streaming).Msg(t.Description)
	}

	var failures []string
	expect := func(ok bool, what string) {
		if !ok {
			failures = append(failures, what)
		}
	}

	for i := range calls {
		res, err := p.Client().Execute(ctx, bridge.Request{Tool: "add", Args: map[string]int{"a": i, "b": 10}})
		if err != nil {
			return err
		}
		var sum int
		if err := res.Decode(&sum); err != nil {
			return err
		}
		log.Info().Int("a", i).Int("b", 10).Int("sum", sum).Msg("add")
		expect(sum == i+10, "add returned a wrong sum")
	}

	chunks := 0
	for res, err := range p.Client().ExecuteStream(ctx, bridge.Request{Tool: "count", Args: map[string]any{"n": 5, "interval": 0.05}}) {
		if err != nil {
			return err
		}
		chunks++
		log.Info().RawJSON("chunk", res.JSON).Msg("stream chunk")
	}
	expect(chunks == 5, "the stream did not yield 5 chunks")

	_, err = p.Client().Execute(ctx, bridge.Request{Tool: "raise", Args: map[string]string{"message": "the widget is missing", "type": "KeyError"}})
	var toolErr *bridge.ToolError
	if errors.As(err, &toolErr) {
		log.Info().Str("type", toolErr.Type).Str("message", toolErr.Message).Msg("a Python exception came back as *bridge.ToolError; its traceback:")
		fmt.Fprint(os.Stderr, toolErr.Traceback)
	}
	expect(toolErr != nil && toolErr.Type == "KeyError", "a Python KeyError did not come back as *ToolError")

	_, err = p.Client().Execute(ctx, bridge.Request{Tool: "nope"})
	log.Info().Err(err).Bool("is_unknown_tool", errors.Is(err, bridge.ErrUnknownTool)).Msg("unknown tool")
	expect(errors.Is(err, bridge.ErrUnknownTool), "an unknown tool was not ErrUnknownTool")

	deadline, cancelDeadline := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelDeadline()
	_, err = p.Client().Execute(deadline, bridge.Request{Tool: "sleep", Args: map[string]float64{"seconds": 5}})
	log.Info().Err(err).Bool("deadline_exceeded", errors.Is(err, context.DeadlineExceeded)).Msg("call past its deadline")
	expect(errors.Is(err, context.DeadlineExceeded), "a call past its deadline did not end with DeadlineExceeded")

	if len(failures) > 0 {
		return fmt.Errorf("the scenario did not go as expected: %v", failures)
	}
	log.Info().Msg("demo scenario went as expected")
	return nil
}
