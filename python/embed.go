// Package python holds the source of pyvisor_worker, the Python side of pyvisor,
// embedded in the Go module: the worker package a Go program installs (cmd/pyvisor
// setup) is always the one its runtime was built with.
package python

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
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

// Digest names the embedded source: 16 hex digits of a SHA-256 over every file's path
// and content. Unpack stamps it into the package (pyvisor_worker/source_digest), and a
// worker started with it in $PYVISOR_SOURCE_DIGEST refuses to serve from a package
// stamped with another: the two sides are one version, even when the version number did
// not change.
func Digest() string { return digest() }

// digest hashes the embedded files once: every worker start passes the digest on.
var digest = sync.OnceValue(func() string {
	h := sha256.New()
	err := fs.WalkDir(source, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := source.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("python: read the embedded package: %v", err)) // a build defect
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
})

// stampPath is where Unpack writes the digest, inside the package.
const stampPath = "src/pyvisor_worker/source_digest"

// Unpack writes the worker package's source tree into dir (created if need be), stamped
// with its Digest, ready for `pip install dir`.
func Unpack(dir string) error {
	if err := unpack(dir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(stampPath)), []byte(Digest()+"\n"), 0o644); err != nil {
		return fmt.Errorf("python: stamp the worker package: %w", err)
	}
	return nil
}

func unpack(dir string) error {
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
