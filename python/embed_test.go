package python_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/pyvisor/pyvisor/python"
)

func TestTheEmbeddedPackageIsTheWholeSourceTree(t *testing.T) {
	var embedded []string
	if err := fs.WalkDir(python.Source(), ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			embedded = append(embedded, path)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range embedded {
		have[p] = true
	}
	// Every file of the package on disk is embedded (no pattern forgot a new module).
	root := filepath.Join("src", "pyvisor_worker")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Name() == "__pycache__" || filepath.Ext(path) == ".pyc" {
			return nil
		}
		if !have[filepath.ToSlash(path)] {
			t.Errorf("%s is not embedded: add it to the go:embed line of embed.go", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pyproject.toml", "README.md", "src/pyvisor_worker/__init__.py", "src/pyvisor_worker/_proto/__init__.py", "src/pyvisor_worker/_proto/worker_pb2.pyi"} {
		if !have[want] {
			t.Errorf("%s is not embedded", want)
		}
	}
}

func TestVersionIsThePackagesOwn(t *testing.T) {
	initPy, err := os.ReadFile(filepath.Join("src", "pyvisor_worker", "__init__.py"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`__version__ = "([^"]+)"`).FindSubmatch(initPy)
	if m == nil {
		t.Fatal("no __version__ in __init__.py")
	}
	if got := python.Version(); got != string(m[1]) {
		t.Fatalf("pyproject.toml says %s, __init__.py %s: keep them equal", got, m[1])
	}
}

func TestUnpackWritesATreePipCanInstall(t *testing.T) {
	dir := t.TempDir()
	if err := python.Unpack(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"pyproject.toml", "src/pyvisor_worker/__main__.py", "src/pyvisor_worker/_proto/worker_pb2.py"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
}

func TestUnpackStampsTheDigestWhichNamesTheSource(t *testing.T) {
	d := python.Digest()
	if len(d) != 16 || d != python.Digest() {
		t.Fatalf("digest %q", d)
	}
	dir := t.TempDir()
	if err := python.Unpack(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "src", "pyvisor_worker", "source_digest"))
	if err != nil || string(b) != d+"\n" {
		t.Fatalf("stamp %q, %v; want %s", b, err, d)
	}
}
