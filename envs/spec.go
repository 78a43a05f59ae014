package envs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pyvisor/pyvisor/python"
)

// Spec is what an environment is made of.
type Spec struct {
	// Python is the interpreter the environment is based on: a path or a command on
	// PATH (a venv's interpreter works too: uv bases the new one on the same Python).
	Python string
	// Requirements is the path of a requirements file, a pyproject.toml (its
	// [project] dependencies) or a uv.lock (with the pyproject.toml beside it).
	Requirements string
}

// Interpreter describes a Python as a key needs it.
type Interpreter struct {
	Implementation string // cpython
	Version        string // 3.11.7
	Machine        string // x86_64
}

func (i Interpreter) String() string {
	return fmt.Sprintf("%s %s %s", i.Implementation, i.Version, i.Machine)
}

// identify runs py once for what a key needs of it, and refuses a Python older than 3.10.
func identify(ctx context.Context, py string) (Interpreter, error) {
	const probe = "import sys, platform; print(sys.implementation.name, '%d.%d.%d' % sys.version_info[:3], platform.machine())"
	out, err := exec.CommandContext(ctx, py, "-c", probe).Output()
	if err != nil {
		return Interpreter{}, fmt.Errorf("%w: %s: %w (install Python 3.10+, or name another with the pool's python)", ErrPython, py, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 3 {
		return Interpreter{}, fmt.Errorf("%w: %s printed %q", ErrPython, py, out)
	}
	in := Interpreter{Implementation: f[0], Version: f[1], Machine: f[2]}
	var major, minor int
	if _, err := fmt.Sscanf(in.Version, "%d.%d", &major, &minor); err != nil || major < 3 || (major == 3 && minor < 10) {
		return Interpreter{}, fmt.Errorf("%w: %s is Python %s, older than 3.10 (name a newer one with the pool's python)", ErrPython, py, in.Version)
	}
	return in, nil
}

// requirementFiles are the files whose content decides what is installed: the one named,
// and for a pyproject.toml or uv.lock the other of the two beside it, if there.
func requirementFiles(path string) []string {
	files := []string{path}
	dir := filepath.Dir(path)
	switch filepath.Base(path) {
	case "pyproject.toml":
		files = append(files, filepath.Join(dir, "uv.lock"))
	case "uv.lock":
		files = append(files, filepath.Join(dir, "pyproject.toml"))
	}
	return files
}

// key names the environment of spec with Python in: 16 hex digits of a SHA-256 over the
// requirements' content, the Python and the worker package's version and source digest.
func key(spec Spec, in Interpreter) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "python\x00%s\x00worker\x00%s\x00%s\x00", in, python.Version(), python.Digest())
	for i, f := range requirementFiles(spec.Requirements) {
		file, err := os.Open(f)
		if err != nil {
			if i > 0 && os.IsNotExist(err) {
				continue // the optional companion file
			}
			return "", fmt.Errorf("%w: %w", ErrRequirements, err)
		}
		fmt.Fprintf(h, "%s\x00", filepath.Base(f))
		_, err = io.Copy(h, file)
		file.Close()
		if err != nil {
			return "", fmt.Errorf("%w: read %s: %w", ErrRequirements, f, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
