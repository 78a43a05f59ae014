package main

import (
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// newLogger returns the one logger of the demo: the runtime, the Python workers (their
// lines are forwarded through it) and protoactor all write through it, on stderr.
func newLogger(format string) (zerolog.Logger, error) {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	switch format {
	case "console":
		w := zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}
		return zerolog.New(w).With().Timestamp().Logger().Level(zerolog.InfoLevel), nil
	case "json":
		return zerolog.New(os.Stderr).With().Timestamp().Logger().Level(zerolog.InfoLevel), nil
	}
	return zerolog.Nop(), fmt.Errorf("-log-format must be console or json, got %q", format)
}
