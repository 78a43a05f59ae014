package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor/bridge"
)

// tools starts one worker for the modules and lists their tools (Describe): name,
// kind, description and parameter schema.
func tools(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := flags("tools", errOut)
	py := fs.String("python", "", "the worker interpreter (default: $PYVISOR_PYTHON, else the nearest .venv, else python3)")
	modules := fs.String("tools", "", "comma-separated tools modules (required)")
	asJSON := fs.Bool("json", false, "print the worker's description as JSON")
	positional, err := parse(fs, args)
	if err != nil {
		return errUsage // the flag package has said why
	}
	if *modules == "" || len(positional) > 0 {
		fmt.Fprintln(errOut, "usage: pyvisor tools [-python P] -tools M,... [-json]")
		return errUsage
	}
	opts := []bridge.Option{
		bridge.WithTools(strings.Split(*modules, ",")...),
		bridge.WithLogger(consoleLog(errOut).Level(zerolog.WarnLevel)),
	}
	if *py != "" {
		opts = append(opts, bridge.WithPython(*py))
	}
	// The worker's handshake and load timeouts bound its start (a model's import may
	// take minutes); Ctrl-C ends it sooner.
	p, err := bridge.Start(ctx, opts...)
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Stop(stopCtx)
	}()
	info, err := p.Client().Describe(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	fmt.Fprintf(out, "%d tools (code version %s, pyvisor-worker %s, Python %s)\n", len(info.Tools), info.CodeVersion, info.PackageVersion, info.PythonVersion)
	for _, t := range info.Tools {
		kind := "sync"
		switch {
		case t.Streaming && t.Async:
			kind = "async stream"
		case t.Streaming:
			kind = "stream"
		case t.Async:
			kind = "async"
		}
		fmt.Fprintf(out, "\n%s  (%s)\n", t.Name, kind)
		if t.Description != "" {
			fmt.Fprintf(out, "  %s\n", strings.ReplaceAll(strings.TrimSpace(t.Description), "\n", "\n  "))
		}
		var schema bytes.Buffer
		if json.Indent(&schema, t.Parameters, "  ", "  ") == nil {
			fmt.Fprintf(out, "  parameters: %s\n", schema.String())
		}
	}
	return nil
}
