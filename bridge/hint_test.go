package bridge

import (
	"strings"
	"testing"
)

func TestTheHintsNameTheCommandThatFixesThem(t *testing.T) {
	cfg := config{python: "/venv/bin/python"}
	for name, hint := range map[string]string{
		"no interpreter":   startHint(ErrInterpreterNotFound, nil, "", failure{}, cfg),
		"no package":       startHint(ErrExitedBeforeHandshake, &ExitError{ExitCode: 1}, "ModuleNotFoundError: No module named pyvisor_worker", failure{}, cfg),
		"another version":  startHint(ErrExitedBeforeHandshake, &ExitError{ExitCode: exitVersion}, "", failure{}, cfg),
		"its command line": startHint(ErrExitedBeforeHandshake, &ExitError{ExitCode: exitUsage}, "", failure{}, cfg),
	} {
		if !strings.Contains(hint, SetupCommand) {
			t.Errorf("%s: the hint %q does not name %q", name, hint, SetupCommand)
		}
	}
}

func TestALoadFailureGetsTheHintOfItsKind(t *testing.T) {
	cfg := config{python: "/venv/bin/python", tools: []string{"myproject.tools"}}
	at := `File "/srv/app/myproject/tools.py", line 3`
	for name, tc := range map[string]struct {
		exception string
		want      []string
	}{
		"a wrong module name": {"ModuleNotFoundError: No module named 'myproject'",
			[]string{`tools module "myproject.tools" was not found`, "pool's dir", "PYTHONPATH"}},
		"a missing package": {"ModuleNotFoundError: No module named 'torch.nn'",
			[]string{`package "torch"`, "/venv/bin/python", "requirements", SetupCommand + " -config FILE", at}},
		"a syntax error": {"SyntaxError: expected ':'", []string{"syntax error", at}},
		"a signature the schema cannot take": {"TypeError: tool 'f': parameter 'x': unsupported parameter annotation <class 'Foo'>",
			[]string{"parameter the schema cannot take", "dataclass", at}},
		"an exception at import": {"FileNotFoundError: [Errno 2] No such file or directory: 'model.bin'",
			[]string{"raised at import", "model.bin", at}},
	} {
		hint := startHint(ErrExitedWhileLoading, &ExitError{ExitCode: exitToolsImport}, "", failure{exception: tc.exception, at: at}, cfg)
		for _, w := range tc.want {
			if !strings.Contains(hint, w) {
				t.Errorf("%s: the hint %q does not say %q", name, hint, w)
			}
		}
		if strings.Contains(hint, "bridge.") {
			t.Errorf("%s: the hint %q speaks of the bridge's options, which a pyvisor.Start user does not have", name, hint)
		}
	}
}
