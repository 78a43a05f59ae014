package bridge

import (
	"regexp"
	"strings"
)

// failure is what a worker's last logged exception says: its final line (such as
// "ModuleNotFoundError: No module named 'torch'") and the user's frame it was raised in
// (`File "/srv/app/tools.py", line 3`), "" when unknown.
type failure struct {
	exception, at string
}

var (
	frameRE   = regexp.MustCompile(`^\s*File "([^"]+)", line (\d+)`)
	locatedRE = regexp.MustCompile(`File "[^"]+", line \d+`)
)

// machinery says whether a traceback frame's file is the import system's or the worker
// package's: frames the user did not write, which hide theirs in a short tail.
func machinery(file string) bool {
	return strings.HasPrefix(file, "<frozen ") || strings.Contains(file, "/importlib/") ||
		strings.Contains(file, "/pyvisor_worker/")
}

// userTraceback is tb without the frames of the import system and the worker package,
// and the failure it ends in: what is left ends in the user's own file and line.
func userTraceback(tb string) ([]string, failure) {
	var kept []string
	var f failure
	skipping := false
	for _, line := range strings.Split(strings.TrimRight(tb, "\n"), "\n") {
		if m := frameRE.FindStringSubmatch(line); m != nil && strings.HasPrefix(line, "  ") {
			skipping = machinery(m[1])
			if !skipping {
				f.at = strings.TrimSpace(m[0])
				kept = append(kept, line)
			}
			continue
		}
		if strings.HasPrefix(line, "    ") { // a frame's source line and its ^^^ marks
			if !skipping {
				kept = append(kept, line)
			}
			continue
		}
		skipping = false
		kept = append(kept, line)
		if line != "" && !strings.HasPrefix(line, "Traceback ") && !strings.HasPrefix(line, "During handling") &&
			!strings.HasPrefix(line, "The above exception") {
			f.exception = line
		}
	}
	if f.at == "" { // the worker's own errors say where the user's code is: a tool's signature
		f.at = locatedRE.FindString(f.exception)
	}
	return kept, f
}
