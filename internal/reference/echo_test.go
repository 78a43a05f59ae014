package reference_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/internal/reference"
)

func TestEcho(t *testing.T) {
	python := bridge.Interpreter()
	if err := exec.Command(python, "-c", "import grpc, pyvisor_worker").Run(); err != nil {
		t.Skipf("%s cannot import grpc and pyvisor_worker: %v", python, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := reference.StartEcho(ctx, python)
	if err != nil {
		t.Fatal(err)
	}
	pid, dir := s.PID(), s.Dir()
	for range 3 {
		if err := s.Unary(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 25 {
				if err := st.Call(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st.Close()
	if err := st.Call(ctx); err == nil {
		t.Error("a call on a closed stream succeeded")
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still there after Close: %v", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s still there after Close: %v", dir, err)
	}
}
