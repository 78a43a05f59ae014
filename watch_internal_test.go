package pyvisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// reloads is a codeWatch's reload that reports each call on a channel and waits for the
// test's go-ahead (or the watch's end) before it returns.
type reloads struct {
	began chan struct{}
	ahead chan struct{}
}

func newReloads(blocking bool) *reloads {
	r := &reloads{began: make(chan struct{}, 100), ahead: make(chan struct{})}
	if !blocking {
		close(r.ahead)
	}
	return r
}

func (r *reloads) reload(ctx context.Context) error {
	r.began <- struct{}{}
	select {
	case <-r.ahead:
	case <-ctx.Done():
	}
	return ctx.Err()
}

// expect waits for n reloads, then checks that no other comes within quiet.
func (r *reloads) expect(t *testing.T, n int, quiet time.Duration) {
	t.Helper()
	for i := range n {
		select {
		case <-r.began:
		case <-time.After(5 * time.Second):
			t.Fatalf("reload %d of %d did not come", i+1, n)
		}
	}
	select {
	case <-r.began:
		t.Fatalf("more than %d reloads", n)
	case <-time.After(quiet):
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func startWatch(t *testing.T, dir string, r *reloads) *codeWatch {
	t.Helper()
	w, err := watchCode(dir, 100*time.Millisecond, r.reload, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.stop)
	return w
}

func TestCodeWatchReloadsOnceAfterABurstOfWrites(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "tools.py"), "v = 1")
	r := newReloads(false)
	startWatch(t, dir, r)
	for i := range 5 {
		write(t, filepath.Join(dir, "tools.py"), "v = "+string(rune('2'+i)))
		time.Sleep(20 * time.Millisecond)
	}
	r.expect(t, 1, 500*time.Millisecond)
}

func TestCodeWatchSkipsWhatIsNotToolCode(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"__pycache__/x.py", ".venv/lib/x.py", "env/lib/site-packages/y.py", "pkg/m.py"} {
		write(t, filepath.Join(dir, p), "")
	}
	r := newReloads(false)
	startWatch(t, dir, r)
	for _, p := range []string{"__pycache__/x.py", ".venv/lib/x.py", "env/lib/site-packages/y.py", "notes.txt", ".#tools.py", "tools.py~"} {
		write(t, filepath.Join(dir, p), "changed")
	}
	r.expect(t, 0, 500*time.Millisecond)

	write(t, filepath.Join(dir, "pkg", "m.py"), "changed") // a package below the folder
	r.expect(t, 1, 300*time.Millisecond)
}

func TestCodeWatchWatchesNewFolders(t *testing.T) {
	dir := t.TempDir()
	r := newReloads(false)
	startWatch(t, dir, r)
	write(t, filepath.Join(dir, "pkg", "sub", "m.py"), "") // a new package: a change
	r.expect(t, 1, 300*time.Millisecond)
	write(t, filepath.Join(dir, "pkg", "sub", "m.py"), "changed") // watched from now on
	r.expect(t, 1, 300*time.Millisecond)
	if err := os.RemoveAll(filepath.Join(dir, "pkg")); err != nil {
		t.Fatal(err)
	}
	r.expect(t, 1, 300*time.Millisecond)
}

func TestCodeWatchReloadsOnceMoreForAChangeDuringAReload(t *testing.T) {
	dir := t.TempDir()
	r := newReloads(true)
	startWatch(t, dir, r)
	write(t, filepath.Join(dir, "tools.py"), "v = 2")
	r.expect(t, 1, 0)
	for _, v := range []string{"3", "4", "5"} { // while the first runs
		write(t, filepath.Join(dir, "tools.py"), "v = "+v)
		time.Sleep(150 * time.Millisecond)
	}
	r.expect(t, 0, 300*time.Millisecond)
	close(r.ahead)
	r.expect(t, 1, 500*time.Millisecond)
}

func TestCodeWatchStopEndsItsReloadAndGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	r := newReloads(true)
	w, err := watchCode(dir, 10*time.Millisecond, r.reload, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "tools.py"), "")
	r.expect(t, 1, 0)
	stopped := make(chan struct{})
	go func() { w.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return while a reload ran")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after stop, %d before", n, before)
	}
}

func TestCodeWatchNeedsItsFolder(t *testing.T) {
	if _, err := watchCode(filepath.Join(t.TempDir(), "missing"), time.Second, newReloads(false).reload, zerolog.Nop()); err == nil {
		t.Fatal("watching a missing folder: no error")
	}
}

func TestCodeWatchRetriesAReloadRefusedForAnotherUnderWay(t *testing.T) {
	dir := t.TempDir()
	r := newReloads(false)
	refused := false
	w, err := watchCode(dir, 50*time.Millisecond, func(ctx context.Context) error {
		_ = r.reload(ctx)
		if !refused {
			refused = true // only run's goroutines call it, one at a time
			return fmt.Errorf("reload pool default: %w", ErrUpgrading)
		}
		return nil
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.stop)
	write(t, filepath.Join(dir, "tools.py"), "")
	r.expect(t, 2, 300*time.Millisecond)
}
