package bridge

import (
	"strings"
	"testing"
)

const importTraceback = `Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/pyvisor_worker/cli.py", line 151, in import_tools
    modules.append(importlib.import_module(name))
                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/importlib/__init__.py", line 126, in import_module
    return _bootstrap._gcd_import(name[level:], package, level)
  File "<frozen importlib._bootstrap>", line 1204, in _gcd_import
  File "<frozen importlib._bootstrap_external>", line 940, in exec_module
  File "/srv/app/model_tools.py", line 2, in <module>
    import torch
ModuleNotFoundError: No module named 'torch'`

func TestATracebackIsCutToTheUsersFrames(t *testing.T) {
	kept, f := userTraceback(importTraceback)
	want := []string{
		"Traceback (most recent call last):",
		`  File "/srv/app/model_tools.py", line 2, in <module>`,
		"    import torch",
		"ModuleNotFoundError: No module named 'torch'",
	}
	if strings.Join(kept, "\n") != strings.Join(want, "\n") {
		t.Errorf("kept:\n%s", strings.Join(kept, "\n"))
	}
	if f.exception != "ModuleNotFoundError: No module named 'torch'" || f.at != `File "/srv/app/model_tools.py", line 2` {
		t.Errorf("failure = %+v", f)
	}
}

func TestASyntaxErrorKeepsItsFileLineAndCaret(t *testing.T) {
	tb := `Traceback (most recent call last):
  File "/venv/pyvisor_worker/cli.py", line 151, in import_tools
    modules.append(importlib.import_module(name))
  File "<frozen importlib._bootstrap>", line 241, in _call_with_frames_removed
  File "/srv/app/syn_tools.py", line 3
    def f(x: int) -> int
                        ^
SyntaxError: expected ':'`
	kept, f := userTraceback(tb)
	if len(kept) != 5 || f.at != `File "/srv/app/syn_tools.py", line 3` || f.exception != "SyntaxError: expected ':'" {
		t.Errorf("kept %q, failure %+v", kept, f)
	}
}

func TestAToolSignatureErrorIsLocatedByItsMessage(t *testing.T) {
	tb := `Traceback (most recent call last):
  File "/venv/pyvisor_worker/tools.py", line 76, in make_tool
    params = parameters_of(fn, tool_name, ToolContext)
TypeError: tool 'f': parameter 'x': unsupported parameter annotation <class 'Foo'> (File "/srv/app/ann.py", line 4)`
	_, f := userTraceback(tb)
	if f.at != `File "/srv/app/ann.py", line 4` || !strings.HasPrefix(f.exception, "TypeError: tool 'f'") {
		t.Errorf("failure = %+v", f)
	}
}
