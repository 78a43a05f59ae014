package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/python"
)

// runCmd runs the command in-process and returns its exit status and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// workerPython is the project's worker interpreter, or skips t without one.
func workerPython(t *testing.T) string {
	t.Helper()
	py := bridge.Interpreter()
	if err := exec.Command(py, "-c", "import pyvisor_worker").Run(); err != nil {
		t.Skipf("needs %s with pyvisor-worker (go tool task setup, or PYVISOR_PYTHON): %v", py, err)
	}
	return py
}

func TestUsageErrorsExitWithTwo(t *testing.T) {
	for _, args := range [][]string{nil, {"nope"}, {"call", "only-one-arg"}, {"setup", "a", "b"}, {"tools"}, {"doctor", "-bogus"}} {
		if code, _, errOut := runCmd(t, args...); code != exitUsage || errOut == "" {
			t.Errorf("pyvisor %v: exit %d (want %d), stderr %q", args, code, exitUsage, errOut)
		}
	}
}

func TestVersionIsTheEmbeddedPackages(t *testing.T) {
	code, out, _ := runCmd(t, "version")
	if code != 0 || !strings.Contains(out, python.Version()) {
		t.Fatalf("exit %d, %q", code, out)
	}
}

func TestDoctorSaysHowToFixAMissingInterpreter(t *testing.T) {
	code, out, _ := runCmd(t, "doctor", "-python", "/nonexistent/python3")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"FAIL interpreter /nonexistent/python3", "fix: install Python 3.10+ and run `go run github.com/pyvisor/pyvisor/cmd/pyvisor setup` in your Go module", "checks failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

func TestDoctorPassesWithTheProjectsVenvAndNamesAToolsModuleThatDoesNotImport(t *testing.T) {
	py := workerPython(t)
	code, out, _ := runCmd(t, "doctor", "-python", py, "-tools", "pyvisor_worker.examples")
	// The project's .venv holds an editable install: doctor cannot compare its source.
	if code != 0 || !strings.Contains(out, "warn worker package pyvisor-worker: "+python.Version()+", not installed by setup") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	code, out, _ = runCmd(t, "doctor", "-python", py, "-tools", "no_such_tools_module")
	if code != 1 || !strings.Contains(out, "FAIL pool -tools: a worker of no_such_tools_module: did not start") ||
		!strings.Contains(out, "No module named 'no_such_tools_module'") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestDoctorImportsAToolsModuleWithTheFirstSlotsEnvironment(t *testing.T) {
	py := workerPython(t)
	dir := t.TempDir()
	module := "import os\n" +
		"assert os.environ['PYVISOR_SLOT'] == '0', os.environ.get('PYVISOR_SLOT')\n" +
		"assert os.environ['PYVISOR_POOL'] == 'gpu', os.environ.get('PYVISOR_POOL')\n" +
		"assert os.environ['CUDA_VISIBLE_DEVICES'] == '3', os.environ.get('CUDA_VISIBLE_DEVICES')\n"
	config := "pools:\n  - name: gpu\n    tools: [needs_slot]\n    env: {PYTHONPATH: " + dir + "}\n" +
		"    slots:\n      devices: [\"3\", \"4\"]\n      env: {CUDA_VISIBLE_DEVICES: \"{{.Device}}\"}\n"
	for name, text := range map[string]string{"needs_slot.py": module, "pyvisor.yaml": config} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := runCmd(t, "doctor", "-python", py, "-config", filepath.Join(dir, "pyvisor.yaml"))
	if code != 0 || !strings.Contains(out, "ok   pool gpu: a worker of needs_slot: started and loaded 0 tools") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestToolsListsToolsWithTheirSchemas(t *testing.T) {
	py := workerPython(t)
	code, out, errOut := runCmd(t, "tools", "-python", py, "-tools", "pyvisor_worker.examples")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"add  (sync)", "Add two integers.", `"a": {`, "count  (async stream)"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the listing", want)
		}
	}
}

func TestCallPrintsTheResultTheChunksTheErrorAndTheTrace(t *testing.T) {
	py := workerPython(t)
	code, out, errOut := runCmd(t, "call", "-python", py, "-trace", "pyvisor_worker.examples", "add", `{"a": 1, "b": 2}`)
	if code != 0 || !strings.HasPrefix(out, "3\ntrace ") || !strings.Contains(out, "└─ tool add") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, "call", "-python", py, "pyvisor_worker.examples", "count", `{"n": 2}`)
	if code != 0 || out != "{\"i\":0}\n{\"i\":1}\n" {
		t.Fatalf("stream: exit %d, %q", code, out)
	}
	code, _, errOut = runCmd(t, "call", "-python", py, "pyvisor_worker.examples", "raise", `{"message": "boom"}`)
	if code != 1 || !strings.Contains(errOut, `raised ValueError: boom`) || !strings.Contains(errOut, "Traceback (most recent call last)") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	code, _, errOut = runCmd(t, "call", "-python", py, "pyvisor_worker.examples", "add", `{"a": `)
	if code != 1 || !strings.Contains(errOut, "the arguments are not JSON") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
}

func TestToolsJSONUsesSnakeCaseAndLogsCarryTimesWithoutColourInAPipe(t *testing.T) {
	py := workerPython(t)
	code, out, errOut := runCmd(t, "tools", "-json", "-python", py, "-tools", "pyvisor_worker.examples")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{`"python_version": "3.`, `"pid": `, `"name": "add"`, `"streaming": true`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in:\n%.300s", want, out)
		}
	}
	if strings.Contains(out, `"PID"`) || strings.Contains(out, `"Name"`) {
		t.Error("Go field names in the JSON")
	}
	var buf bytes.Buffer
	log := consoleLog(&buf)
	log.Warn().Msg("hello")
	if line := buf.String(); strings.Contains(line, "<nil>") || strings.Contains(line, "\x1b[") {
		t.Errorf("a log line without its time, or with colour codes, in a pipe: %q", line)
	}
}

func TestCallTakesFlagsAfterItsArguments(t *testing.T) {
	py := workerPython(t)
	code, out, errOut := runCmd(t, "call", "pyvisor_worker.examples", "add", `{"a": 1, "b": 2}`, "-python", py, "-timeout", "20s")
	if code != 0 || out != "3\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
}

// fakePython writes a shell script that answers setup's and doctor's questions as an
// interpreter of version would, with the Go module's own worker package installed.
func fakePython(t *testing.T, path, version string) {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
case "$2" in
*version_info*) echo %s; case %s in 3.9*) exit 1;; esac;;
*__version__*) echo %s %s;;
*) exit 3;;
esac
`, version, version, python.Version(), python.Digest())
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestSetupReusesAVenvThatHasTheWorkerAndChecksThePythonBeforeMakingOne(t *testing.T) {
	dir := t.TempDir()
	venv := filepath.Join(dir, "venv")
	fakePython(t, filepath.Join(venv, "bin", "python"), "3.12.1")
	code, out, errOut := runCmd(t, "setup", venv)
	if code != 0 || !strings.Contains(out, "is already in "+venv) || strings.Contains(out, "installing") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	old := filepath.Join(dir, "python3.9")
	fakePython(t, old, "3.9.18")
	fresh := filepath.Join(dir, "fresh")
	code, out, errOut = runCmd(t, "setup", "-python", old, fresh)
	if code != 1 || !strings.Contains(errOut, "older than 3.10") || strings.Contains(out, "creating") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatalf("setup left %s behind: %v", fresh, err)
	}
}

func TestSetupConfigBuildsEachPoolsEnvironmentOnceAndReusesIt(t *testing.T) {
	py := workerPython(t) // the base Python of the environment
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "requirements.txt"), []byte("six==1.16.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "pyvisor.yaml")
	yaml := "environments: envs\npools:\n  - name: a\n    tools: [six]\n    python: " + py + "\n    requirements: requirements.txt\n"
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "setup", "-config", config)
	if code != 0 || !strings.Contains(out, "ok: pool a runs environment ") || !strings.Contains(out, "built in") {
		t.Fatalf("first setup: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	began := time.Now()
	code, out, errOut = runCmd(t, "setup", "-config", config)
	took := time.Since(began)
	if code != 0 || !strings.Contains(out, "(already built, Python") || strings.Contains(out, "building") {
		t.Fatalf("second setup: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("setup of a built environment took %v", took) // the goal is 3 s; figures go in benchmarks, not assertions
	code, out, _ = runCmd(t, "doctor", "-config", config)
	if code != 0 || !strings.Contains(out, "pool a") {
		t.Fatalf("doctor of the built environment: exit %d:\n%s", code, out)
	}
}

func TestDoctorStartsAWorkerOfEachPoolAndWeighsItsLoadAgainstTheBound(t *testing.T) {
	py := workerPython(t)
	tools, err := filepath.Abs("../../specs/bridge/testdata/tools")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "pyvisor.yaml")
	yaml := fmt.Sprintf(`python: %s
pools:
  - name: quick
    tools: [pyvisor_worker.examples]
    memory_limit: 1073741824
  - name: model
    tools: [model_import]
    env: {PYTHONPATH: %s}
    load_timeout: 1s
`, py, tools)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd(t, "doctor", "-config", config)
	for _, want := range []string{
		"ok   pool quick: a worker of pyvisor_worker.examples: started and loaded ",
		"memory_limit 1024 MiB enforced by a sampler every 50 ms",
		"FAIL pool model: a worker of model_import: did not start",
		"fix: raise the pool's load_timeout (now 1s) above the import's time",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor does not say %q", want)
		}
	}
	if code != 1 || t.Failed() {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
