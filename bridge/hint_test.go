package bridge

import (
	"strings"
	"testing"
)

func TestTheHintsNameTheCommandThatFixesThem(t *testing.T) {
	cfg := config{python: "/venv/bin/python"}
	for name, hint := range map[string]string{
		"no interpreter":   startHint(ErrInterpreterNotFound, nil, "", cfg),
		"no package":       startHint(ErrExitedBeforeHandshake, &ExitError{ExitCode: 1}, "ModuleNotFoundError: No module named pyvisor_worker", cfg),
		"another version":  startHint(ErrExitedBeforeHandshake, &ExitError{ExitCode: exitVersion}, "", cfg),
		"its command line": startHint(ErrExitedBeforeHandshake, &ExitError{ExitCode: exitUsage}, "", cfg),
	} {
		if !strings.Contains(hint, SetupCommand) {
			t.Errorf("%s: the hint %q does not name %q", name, hint, SetupCommand)
		}
	}
}
