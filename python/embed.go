// Package python holds the source of pyvisor_worker, the Python side of pyvisor,
// embedded in the Go module: the worker package a Go program installs (cmd/pyvisor
// setup) is always the one its runtime was built with.
package python

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// The package's source tree, as pip installs it: pyproject.toml, its README and src/.
//
//go:embed pyproject.toml README.md src/pyvisor_worker/*.py src/pyvisor_worker/py.typed src/pyvisor_worker/_proto/*.py src/pyvisor_worker/_proto/*.pyi
var source embed.FS

// Source is the worker package's source tree (pyproject.toml at its root).
func Source() fs.FS { return source }

var versionLine = regexp.MustCompile(`(?m)^version = "([^"]+)"$`)

// Version is the worker package's version, from its pyproject.toml: what
// pyvisor_worker.__version__ and a worker's Describe report.
func Version() string {
	b, err := source.ReadFile("pyproject.toml")
	if err != nil {
		panic(fmt.Sprintf("python: the embedded pyproject.toml is missing: %v", err)) // a build defect
	}
	m := versionLine.FindSubmatch(b)
	if m == nil {
		panic("python: the embedded pyproject.toml has no version line") // a build defect
	}
	return string(m[1])
}

// Unpack writes the worker package's source tree into dir (created if need be), ready
// for `pip install dir`.
func Unpack(dir string) error {
	return fs.WalkDir(source, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := source.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			return fmt.Errorf("python: unpack the worker package: %w", err)
		}
		return nil
	})
}
