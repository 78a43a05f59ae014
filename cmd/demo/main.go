// Command demo runs a supervised pool of Python workers with heartbeats on and puts it
// through its paces: calls, a stream, typed errors, a session, an upgrade under load
// (ReloadAs rolls version "demo-v2" through the pool while callers keep calling; see
// upgrade.go), then a worker that crashes and one whose event loop hangs, both detected
// and replaced on screen, and a summary at the end (calls, errors by kind, restarts by
// reason, latency percentiles, the upgrade's calls, failures and versions).
//
// With no flags it runs an embedded default configuration (default.yaml: a pool of 2
// workers of pyvisor_worker.examples, heartbeats every 500ms). Run it with
// `go tool task demo`, flags after `--`:
//
//	-workers N                 workers in the pool (default: the configuration's)
//	-calls N                   add calls to make (default 20)
//	-config FILE               a YAML or JSON configuration instead of the default
//	-log-format console|json   console (default) or one JSON object per line on stderr
//	-traces=false              do not print the trace trees
//	-cluster                   the cluster demo instead (see cluster.go)
//
// Logs (Go's, the Python workers' and protoactor's) go to stderr, the summary to stdout.
//
// Tracing: after the scenario the demo prints on stderr the whole trace of a few calls
// (an add, the stream, the crash) and of the restarts, as indented trees: the Go spans
// (kept by an in-memory recorder) and the Python workers' spans (pyvisor.WithPythonSpans)
// under one trace id, each with its service, duration, key attributes and status; a
// restart is a trace of its own, linked to the call whose failure caused it. The tracer
// provider also honours the OpenTelemetry environment: with OTEL_TRACES_EXPORTER=otlp
// (and OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL) both sides send their spans to the
// collector instead, and the demo prints no tree, only where the spans went and the trace
// ids to look up. See docs/observability.md.
// The exit status is 0 if the scenario went as expected, 1 if not, 2 for bad flags or
// configuration, 130 if interrupted (Ctrl-C or SIGTERM stop the runtime cleanly first).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pyvisor/pyvisor"
)

func main() { os.Exit(run()) }

func run() int {
	workers := flag.Int("workers", 0, "workers in the pool (default: the configuration's, 2 in the embedded one)")
	calls := flag.Int("calls", 20, "how many add calls to make")
	configFile := flag.String("config", "", "YAML or JSON configuration file (default: the embedded one)")
	logFormat := flag.String("log-format", "console", "console or json")
	traces := flag.Bool("traces", true, "print the trace trees of some calls after the scenario")
	metricsAddr := flag.String("metrics-addr", "", "serve Prometheus metrics on this host:port at /metrics (e.g. 127.0.0.1:9568; port 0 picks one)")
	linger := flag.Duration("linger", 0, "after the scenario, keep running this long (heartbeats going, metrics served) so a scraper can watch")
	clustered := flag.Bool("cluster", false, "run the cluster demo instead: three node processes on loopback, one killed and restarted, then a rolling upgrade node by node")
	node := flag.String("node", "", "(used by -cluster) run as this node until SIGTERM, hosting pool shared")
	nodeFlags := nodeFlags{}
	flag.StringVar(&nodeFlags.bind, "node-bind", "", "(used by -cluster) the node's remote endpoint")
	flag.IntVar(&nodeFlags.port, "node-port", 0, "(used by -cluster) the node's automanaged port")
	flag.StringVar(&nodeFlags.peers, "node-peers", "", "(used by -cluster) every node's automanaged host:port, comma-separated")
	flag.StringVar(&nodeFlags.spans, "node-spans", "", "(used by -cluster) where the node writes its spans")
	flag.StringVar(&nodeFlags.reloadAs, "node-reload-as", "", "(used by -cluster) the version label of the node's reloads on SIGHUP (default: the hash of the code on disk)")
	flag.Parse()

	log, err := newLogger(*logFormat)
	if err == nil && *node != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runNode(ctx, *node, nodeFlags, log)
	}
	if err == nil && (*workers < 0 || *calls < 0 || *linger < 0) {
		err = fmt.Errorf("-workers, -calls and -linger must not be negative")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 2
	}
	cfg, err := loadConfig(*configFile, *workers)
	if err == nil && *metricsAddr != "" {
		cfg.Metrics = pyvisor.MetricsConfig{Enabled: true, Address: *metricsAddr}
		err = cfg.Validate()
	}
	if err != nil {
		log.Error().Err(err).Msg("demo: bad configuration")
		return 2
	}

	// The first Ctrl-C or SIGTERM stops the demo cleanly; after it, a second one kills
	// it at once (the Python workers die with it: they watch their parent).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	if *clustered {
		return clusterDemo(ctx, log)
	}

	tr, err := newTracing(ctx, *traces, log)
	if err != nil {
		log.Error().Err(err).Msg("demo: bad tracing configuration")
		return 2
	}
	defer tr.shutdown(log)
	tr.adjust(&cfg, log)

	began := time.Now()
	pc := cfg.Pools[0]
	log.Info().Str("pool", pc.Name).Int("workers", pc.Workers).Bool("heartbeat", pc.Heartbeat.Enabled).
		Stringer("heartbeat_interval", pc.Heartbeat.Interval).Stringer("heartbeat_timeout", pc.Heartbeat.Timeout).
		Int("max_missed", pc.Heartbeat.MaxMissed).Msg("starting the runtime")
	rt, err := pyvisor.Start(ctx, cfg, append(tr.options(), pyvisor.WithLogger(log), callbackOption())...)
	if err != nil {
		if ctx.Err() != nil {
			log.Warn().Msg("interrupted while starting")
			return 130
		}
		log.Error().Err(err).Msg("demo: the runtime did not start")
		return 1
	}
	log.Info().Stringer("took", time.Since(began).Round(time.Millisecond)).Msg("the runtime is up")
	if addr := rt.MetricsAddress(); addr != "" {
		log.Info().Str("url", "http://"+addr+"/metrics").Msg("serving Prometheus metrics")
	}

	sc := newScenario(rt, cfg, *calls, log, tr.tracer())
	scErr := sc.run(ctx)
	if ctx.Err() != nil {
		log.Warn().Msg("interrupted: stopping the runtime")
	} else if scErr != nil {
		log.Error().Err(scErr).Msg("demo: the scenario could not go on")
	}

	if *linger > 0 && ctx.Err() == nil {
		log.Info().Stringer("for", *linger).Str("metrics", rt.MetricsAddress()).Msg("lingering: heartbeats go on, metrics are served; Ctrl-C ends it early")
		select {
		case <-time.After(*linger):
		case <-ctx.Done():
		}
	}

	if sc.final.Pool == "" { // the scenario did not finish: the counts so far
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if st, err := sc.stats(sctx); err == nil {
			sc.final = st
		}
		cancel()
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stopErr := rt.Stop(stopCtx)
	if stopErr != nil {
		log.Error().Err(stopErr).Msg("demo: stop")
	} else {
		log.Info().Msg("the runtime stopped")
	}
	tr.shutdown(log) // flushed: the Python workers flushed theirs as they stopped
	tr.report(os.Stderr, log, *logFormat == "json")
	sum := summary{
		pool: pc.Name, workers: pc.Workers, wall: time.Since(began),
		interrupted: ctx.Err() != nil, stopErr: stopErr, leftover: alive(sc.pids),
	}
	sum.print(os.Stdout, sc, log, *logFormat == "json")

	switch {
	case sum.interrupted:
		return 130
	case scErr != nil || stopErr != nil || len(sum.leftover) > 0 || len(sc.tally.failures) > 0:
		return 1
	}
	return 0
}

// alive returns the processes of pids that still exist.
func alive(pids map[int]bool) []int {
	var out []int
	for pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			out = append(out, pid)
		}
	}
	return out
}
