package reference_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/reference"
)

// dataSizes are the payload sizes of the data-throughput benchmarks.
var dataSizes = []struct {
	name string
	size int
}{
	{"64KiB", 64 << 10},
	{"1MiB", 1 << 20},
	{"16MiB", 16 << 20},
	{"256MiB", 256 << 20},
}

// startSocketEcho starts a SocketEcho with bridge.Interpreter() (PYVISOR_PYTHON, else
// the nearest .venv), or skips tb if that interpreter cannot run.
func startSocketEcho(tb testing.TB) *reference.SocketEcho {
	tb.Helper()
	python := bridge.Interpreter()
	if err := exec.Command(python, "-c", "import socket").Run(); err != nil {
		tb.Skipf("python interpreter %s (PYVISOR_PYTHON) cannot run: %v", python, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := reference.StartSocketEcho(ctx, python)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func randomBytes(size int, seed uint64) []byte {
	b := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func TestSocketEcho(t *testing.T) {
	s := startSocketEcho(t)
	pid, dir := s.PID(), s.Dir()
	for i, size := range []int{0, 1, 64 << 10, 16 << 20, 1} {
		in := randomBytes(size, uint64(i))
		out := make([]byte, size)
		if err := s.RoundTrip(in, out); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if !bytes.Equal(in, out) {
			t.Fatalf("%d bytes: the echo differs", size)
		}
	}
	if err := s.RoundTrip(make([]byte, 3), make([]byte, 2)); err == nil {
		t.Error("RoundTrip with len(out) != len(in) succeeded")
	}
	in := randomBytes(100, 99)
	out := make([]byte, 100)
	if err := s.RoundTrip(in, out); err != nil || !bytes.Equal(in, out) {
		t.Errorf("RoundTrip after a refused one: %v, equal %v", err, bytes.Equal(in, out))
	}

	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.RoundTrip(in, out); err == nil {
		t.Error("RoundTrip after Close succeeded")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still there after Close: %v", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s still there after Close: %v", dir, err)
	}
}

func TestSocketEchoStartFails(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s, err := reference.StartSocketEcho(ctx, "/nonexistent/python"); err == nil {
		_ = s.Close()
		t.Fatal("StartSocketEcho with a missing interpreter succeeded")
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("StartSocketEcho left %v in %s (%v)", left, tmp, err)
	}
}

func TestMemmoveRate(t *testing.T) {
	if r := reference.MemmoveRate(1<<20, 10*time.Millisecond); r <= 0 {
		t.Errorf("MemmoveRate(1 MiB) = %v", r)
	}
	if r := reference.MemmoveRate(0, time.Millisecond); r != 0 {
		t.Errorf("MemmoveRate(0) = %v, want 0", r)
	}
}

// BenchmarkSocketEcho measures round trips through the bare Unix-socket echo. SetBytes is
// twice the payload (out and back), so MB/s is the round trip's effective rate.
func BenchmarkSocketEcho(b *testing.B) {
	s := startSocketEcho(b)
	defer func() {
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	}()
	for _, c := range dataSizes {
		b.Run(c.name, func(b *testing.B) {
			in, out := randomBytes(c.size, 1), make([]byte, c.size)
			// Untimed: touches out and grows the server's buffer.
			if err := s.RoundTrip(in, out); err != nil {
				b.Fatal(err)
			}
			if !bytes.Equal(in, out) {
				b.Fatal("the echo differs")
			}
			b.SetBytes(2 * int64(c.size))
			for b.Loop() {
				if err := s.RoundTrip(in, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMemmove measures copy between two preallocated, pre-touched buffers: the
// in-process ceiling BenchmarkSocketEcho's rates compare with. SetBytes is the size.
func BenchmarkMemmove(b *testing.B) {
	for _, c := range dataSizes {
		b.Run(c.name, func(b *testing.B) {
			src, dst := randomBytes(c.size, 1), make([]byte, c.size)
			copy(dst, src)
			b.SetBytes(int64(c.size))
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}
