// Command pyvisor sets up and checks the Python side of a program that embeds pyvisor,
// and runs tools by hand. Its worker package is the one embedded in the Go module
// (github.com/pyvisor/pyvisor/python), so what it installs is always the version your
// runtime speaks:
//
//	go run github.com/pyvisor/pyvisor/cmd/pyvisor@<version> setup [DIR]
//
// Commands:
//
//	setup [-python python3] [-r requirements.txt] [DIR]   create a venv (default .venv) with the worker package
//	doctor [-python P] [-tools M,...] [-config FILE]      check interpreter, package version, tool imports, runtime dir
//	tools [-python P] -tools M,... [-json]                list tools and their parameter schemas
//	call [-python P] [-config FILE] [-trace] [-timeout D] [-v] POOL-or-MODULE TOOL [JSON]
//	                                                      run one call; print its result, its error or its trace
//	version                                               print the versions of the Go module's worker package
//
// The interpreter is -python, else $PYVISOR_PYTHON, else the nearest .venv, else python3.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor/python"
)

// exitUsage is the exit status of a command line that makes no sense.
const exitUsage = 2

// errFailed is a command that ran and reported its own failure (exit 1, no extra line).
var errFailed = errors.New("failed")

type command struct {
	name, usage string
	run         func(ctx context.Context, args []string, out, errOut io.Writer) error
}

var commands = []command{
	{"setup", "setup [-python python3] [-r requirements.txt] [DIR]  create a venv (default .venv) with the worker package", setup},
	{"doctor", "doctor [-python P] [-tools M,...] [-config FILE]  check the Python side and say how to fix it", doctor},
	{"tools", "tools [-python P] -tools M,... [-json]  list the tools of modules, with their parameter schemas", tools},
	{"call", "call [-python P] [-config FILE] [-trace] [-timeout D] [-v] POOL-or-MODULE TOOL [JSON]  run one call", call},
	{"version", "version  print the worker package version this command embeds", version},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(errOut)
		return exitUsage
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], out, errOut)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp), errors.Is(err, errUsage):
			return exitUsage
		case errors.Is(err, errFailed):
			return 1
		}
		fmt.Fprintf(errOut, "pyvisor %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(errOut, "pyvisor: unknown command %q\n", args[0])
	usage(errOut)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: pyvisor COMMAND [flags]   (worker package %s)\n\ncommands:\n", python.Version())
	for _, c := range commands {
		fmt.Fprintf(w, "  %s\n", c.usage)
	}
}

// errUsage is a command line a command refused (it printed why).
var errUsage = errors.New("usage")

// flags is a command's flag set, printing its errors and usage to errOut.
func flags(name string, errOut io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pyvisor "+name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	return fs
}

func version(_ context.Context, args []string, out, errOut io.Writer) error {
	if len(args) > 0 {
		fmt.Fprintln(errOut, "usage: pyvisor version")
		return errUsage
	}
	fmt.Fprintf(out, "pyvisor-worker %s (embedded)\n", python.Version())
	return nil
}

// parse parses a command line whose flags may come before, between or after its
// arguments (pyvisor call pool add '{}' -trace), and returns the arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// consoleLog is a human-readable logger on w, coloured only when w is a terminal (never
// in a file or a pipe).
func consoleLog(w io.Writer) zerolog.Logger {
	color := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			color = true
		}
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: w, NoColor: !color}).With().Timestamp().Logger()
}
