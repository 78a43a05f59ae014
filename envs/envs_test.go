package envs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// python3 is the interpreter the tests identify; they skip without one.
func python3(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH")
	}
	return py
}

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeyFollowsTheRequirementsAndThePython(t *testing.T) {
	dir := t.TempDir()
	a := write(t, filepath.Join(dir, "a.txt"), "six==1.16.0\n")
	b := write(t, filepath.Join(dir, "b.txt"), "six==1.17.0\n")
	in := Interpreter{Implementation: "cpython", Version: "3.11.7", Machine: "x86_64"}
	ka, err := key(Spec{Requirements: a}, in)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := key(Spec{Requirements: b}, in)
	other := in
	other.Version = "3.12.1"
	ko, _ := key(Spec{Requirements: a}, other)
	again, _ := key(Spec{Requirements: a}, in)
	if ka == kb || ka == ko || ka != again || len(ka) != 16 {
		t.Fatalf("keys: a %s, b %s, a on 3.12 %s, a again %s", ka, kb, ko, again)
	}
}

func TestKeyOfAProjectCoversItsLock(t *testing.T) {
	dir := t.TempDir()
	project := write(t, filepath.Join(dir, "pyproject.toml"), "[project]\nname = \"x\"\n")
	in := Interpreter{Implementation: "cpython", Version: "3.11.7", Machine: "x86_64"}
	before, _ := key(Spec{Requirements: project}, in)
	write(t, filepath.Join(dir, "uv.lock"), "version = 1\n")
	after, _ := key(Spec{Requirements: project}, in)
	lock, _ := key(Spec{Requirements: filepath.Join(dir, "uv.lock")}, in)
	if before == after || lock == after {
		t.Fatalf("keys: without lock %s, with %s, of the lock %s", before, after, lock)
	}
}

func TestMissingRequirementsAreReported(t *testing.T) {
	_, err := key(Spec{Requirements: filepath.Join(t.TempDir(), "nope.txt")}, Interpreter{})
	if !errors.Is(err, ErrRequirements) || !strings.Contains(err.Error(), "nope.txt") {
		t.Fatalf("err = %v", err)
	}
}

func TestFindSaysWhatIsNotBuiltAndHowToBuildIt(t *testing.T) {
	py := python3(t)
	cache := Cache{Dir: t.TempDir()}
	req := write(t, filepath.Join(t.TempDir(), "requirements.txt"), "six==1.16.0\n")
	_, err := cache.Find(context.Background(), Spec{Python: py, Requirements: req})
	if !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("err = %v, want ErrNotBuilt", err)
	}
	for _, want := range []string{req, cache.Dir, "pyvisor setup -config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

func TestFindReturnsAFinishedBuildOnly(t *testing.T) {
	py := python3(t)
	cache := Cache{Dir: t.TempDir()}
	req := write(t, filepath.Join(t.TempDir(), "requirements.txt"), "six==1.16.0\n")
	ctx := context.Background()
	in, err := identify(ctx, py)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := key(Spec{Requirements: req}, in)
	dir := filepath.Join(cache.Dir, k)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "bin", "python"), "")
	if _, err := cache.Find(ctx, Spec{Python: py, Requirements: req}); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("a build without its marker: err = %v, want ErrNotBuilt", err)
	}
	if err := cache.mark(Env{Key: k, Dir: dir, Python: in, Requirements: req, Built: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e, err := cache.Find(ctx, Spec{Python: py, Requirements: req})
	if err != nil || e.Interpreter() != filepath.Join(dir, "bin", "python") || e.Python != in {
		t.Fatalf("Find = %+v, %v", e, err)
	}
}

func TestAnInterpreterThatCannotRunIsReported(t *testing.T) {
	_, err := Cache{Dir: t.TempDir()}.Find(context.Background(), Spec{Python: "/no/such/python", Requirements: "r.txt"})
	if !errors.Is(err, ErrPython) || !strings.Contains(err.Error(), "/no/such/python") {
		t.Fatalf("err = %v", err)
	}
}

func TestHintsReadUVsOutput(t *testing.T) {
	for out, want := range map[string]string{
		"× No solution found when resolving dependencies:\n  ╰─▶ Because pyvisor-worker depends on protobuf>=7": "conflict with the worker package",
		"× No solution found when resolving dependencies:\n  ╰─▶ Because you require six==1 and six==2":         "no versions fit",
		"error: Failed to fetch: `https://pypi.org/simple/six/`\n  Caused by: dns error":                        "could not reach the package index",
	} {
		if got := hint(&RunError{Output: out, Err: errors.New("exit status 1")}); !strings.Contains(got, want) {
			t.Errorf("hint(%q) = %q, want %q", out, got, want)
		}
	}
}
