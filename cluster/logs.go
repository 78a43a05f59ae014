package cluster

import (
	"context"
	"log/slog"

	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor/telemetry"
)

// expected are protoactor's error lines about what a cluster goes through by design:
// a peer not up yet or gone (logged at every poll), a connection to a node lost (the
// node's own "cluster node lost" warning says it once), the provider stopping. They
// are written at debug level.
var expected = map[string]bool{
	"Bad connection to the node health status":       true,
	"Failure reaching nodes":                         true,
	"EndpointWriter lost connection":                 true,
	"EndpointWriter failed to connect":               true,
	"EndpointWriter failed to create receive stream": true,
	"Automanaged server stopping..!":                 true,
	"gRPC server stopped":                            true,
}

// protoactorLog is the logger of the cluster's actor system: protoactor's errors, and
// its expected ones only at debug level.
func protoactorLog(log zerolog.Logger) *slog.Logger {
	l := log.With().Str("component", "protoactor").Logger()
	return slog.New(quiet{telemetry.Slog(l).Handler(), l.GetLevel()})
}

type quiet struct {
	slog.Handler
	level zerolog.Level
}

func (q quiet) Enabled(ctx context.Context, level slog.Level) bool {
	return q.Handler.Enabled(ctx, level) && (level >= slog.LevelError || q.level <= zerolog.DebugLevel)
}

func (q quiet) Handle(ctx context.Context, r slog.Record) error {
	if expected[r.Message] {
		if q.level > zerolog.DebugLevel {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return q.Handler.Handle(ctx, r)
}

func (q quiet) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quiet{q.Handler.WithAttrs(attrs), q.level}
}

func (q quiet) WithGroup(name string) slog.Handler { return quiet{q.Handler.WithGroup(name), q.level} }
