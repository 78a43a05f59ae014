package pyvisor_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/bridge"
)

// TestTelemetryFromEnvIsOneSwitch: with OTEL_TRACES_EXPORTER=console and nothing wired
// in code, the runtime's spans reach the console exporter (this test's own binary, run
// as a child, is the application), flushed at Stop.
func TestTelemetryFromEnvIsOneSwitch(t *testing.T) {
	py := bridge.Interpreter()
	if os.Getenv("PYVISOR_FROMENV_CHILD") == "1" {
		fromEnvApp(t, py)
		return
	}
	if err := exec.Command(py, "-c", "import pyvisor_worker").Run(); err != nil {
		t.Skipf("needs %s with pyvisor-worker: %v", py, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTelemetryFromEnvIsOneSwitch$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PYVISOR_FROMENV_CHILD=1", "OTEL_TRACES_EXPORTER=console", "OTEL_METRICS_EXPORTER=none")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the application failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"Name":"execute add"`, `"pyvisor.tool"`, `"service.name"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %s in what the console exporter printed:\n%.800s", want, out)
		}
	}
}

// fromEnvApp is an application that only says WithTelemetryFromEnv.
func fromEnvApp(t *testing.T, py string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rt, err := pyvisor.Start(ctx, pyvisor.Config{Python: py,
		Pools: []pyvisor.PoolConfig{{Name: "default", Tools: []string{"pyvisor_worker.examples"}, Workers: 1}}},
		pyvisor.WithTelemetryFromEnv())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Execute(ctx, "default", "add", map[string]int{"a": 1, "b": 2}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
