package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/telemetry"
)

// user is what the demo's Go callback lookup_user returns to Python.
type user struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// lookupUser is the Go function the Python tool greet calls back into
// (ctx.call_go("lookup_user", id=...)). Its log line carries the Python call's
// correlation id and trace (zerolog.Ctx).
func lookupUser(ctx context.Context, args struct {
	ID int `json:"id"`
}) (user, error) {
	names := map[int]string{1: "Ada Lovelace", 2: "Grace Hopper"}
	name, ok := names[args.ID]
	if !ok {
		return user{}, fmt.Errorf("no user %d", args.ID)
	}
	zerolog.Ctx(ctx).Info().Int("id", args.ID).Str("name", name).
		Msg("go callback lookup_user, called from python (this line carries the call's correlation_id and trace_id)")
	return user{ID: args.ID, Name: name}, nil
}

// callbackOption registers the demo's Go callback.
func callbackOption() pyvisor.Option {
	return pyvisor.WithCallback("lookup_user", pyvisor.Typed(lookupUser))
}

// callback runs the Python tool greet, which calls the Go function lookupUser and uses
// its answer; its trace shows the callback nested inside the tool span.
func (s *scenario) callback(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(telemetry.WithCorrelationID(ctx, cidCallback), callTimeout)
	defer cancel()
	began := time.Now()
	res, err := s.execute(cctx, "greet", map[string]int{"user_id": 1})
	var greeting string
	if err == nil {
		err = res.Decode(&greeting)
	}
	if s.tally.expect(err == nil && greeting == "Hello, Ada Lovelace!", fmt.Sprintf("greet: want a greeting, got %q, %v", greeting, err)) {
		s.log.Info().Str("greeting", greeting).Stringer("took", round(time.Since(began))).
			Msg("python tool greet called back into go for the user's name")
	}
	_, err = s.execute(cctx, "call_go_unguarded", map[string]any{"name": "lookup_user", "args": map[string]int{"id": 7}})
	var toolErr *pyvisor.ToolError
	if s.tally.expect(errors.As(err, &toolErr) && toolErr.Type == "pyvisor_worker.GoError", fmt.Sprintf("want a GoError back, got %v", err)) {
		s.log.Info().Str("type", toolErr.Type).Str("message", toolErr.Message).
			Msg("a go callback's error, raised in python, came back as *pyvisor.ToolError")
	}
	return ctx.Err()
}
