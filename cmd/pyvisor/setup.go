package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pyvisor/pyvisor/python"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// setup creates a venv in DIR (default .venv), or reuses the one there, and installs the
// embedded worker package into it (and the user's requirements with -r).
func setup(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := flags("setup", errOut)
	base := fs.String("python", "python3", "the Python 3.10+ interpreter that creates the venv")
	var reqs stringList
	fs.Var(&reqs, "r", "a requirements file of your own tools' packages to install too (repeatable)")
	if fs.Parse(args) != nil {
		return errUsage // the flag package has said why
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(errOut, "usage: pyvisor setup [-python python3] [-r requirements.txt] [DIR]")
		return errUsage
	}
	dir := ".venv"
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	py := filepath.Join(dir, "bin", "python")
	if _, err := os.Stat(py); err != nil {
		fmt.Fprintf(out, "creating a venv in %s with %s\n", dir, *base)
		if err := runPython(ctx, *base, out, "-m", "venv", dir); err != nil {
			return fmt.Errorf("create the venv: %w (is %s a Python 3.10+ with the venv module? On Debian: apt install python3-venv)", err, *base)
		}
	} else {
		fmt.Fprintf(out, "reusing the venv in %s\n", dir)
	}
	src, err := os.MkdirTemp("", "pyvisor-worker-src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if err := python.Unpack(src); err != nil {
		return err
	}
	fmt.Fprintf(out, "installing pyvisor-worker %s (the Go module's own)\n", python.Version())
	install := []string{"-m", "pip", "install", "--quiet", "--disable-pip-version-check", src}
	for _, r := range reqs {
		install = append(install, "-r", r)
	}
	if err := runPython(ctx, py, out, install...); err != nil {
		return fmt.Errorf("pip install: %w (pip needs to reach PyPI, or a mirror set with PIP_INDEX_URL)", err)
	}
	got, err := workerVersion(ctx, py)
	if err != nil {
		return err
	}
	if got != python.Version() {
		return fmt.Errorf("the venv reports pyvisor-worker %s after installing %s", got, python.Version())
	}
	if stamp := sourceDigest(ctx, py); stamp != python.Digest() {
		return fmt.Errorf("the venv's worker package is stamped %q after installing source %s", stamp, python.Digest())
	}
	fmt.Fprintf(out, "ok: pyvisor-worker %s (source %s) in %s\n", got, python.Digest(), dir)
	fmt.Fprintf(out, "the runtime finds it as the nearest .venv above its working directory, or set PYVISOR_PYTHON=%s\n", py)
	return nil
}

// runPython runs py with args, its output going to out; on failure the error carries
// the tail of that output.
func runPython(ctx context.Context, py string, out io.Writer, args ...string) error {
	var tail bytes.Buffer
	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Stdout = io.MultiWriter(out, &tail)
	cmd.Stderr = io.MultiWriter(out, &tail)
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(tail.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		if msg != "" {
			return fmt.Errorf("%s %s: %w\n%s", py, strings.Join(args, " "), err, msg)
		}
		return fmt.Errorf("%s %s: %w", py, strings.Join(args, " "), err)
	}
	return nil
}

// workerVersion is pyvisor_worker.__version__ as py imports it.
func workerVersion(ctx context.Context, py string) (string, error) {
	b, err := exec.CommandContext(ctx, py, "-c", "import pyvisor_worker; print(pyvisor_worker.__version__)").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s cannot import pyvisor_worker: %w: %s", py, err, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}
