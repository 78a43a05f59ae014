package bridge

import (
	"os"
	"path/filepath"
)

// Interpreter returns the Python interpreter a worker runs when none is given:
// $PYVISOR_PYTHON if set, else the nearest .venv/bin/python from the working directory
// upward (the project's venv), else "python3" from PATH.
func Interpreter() string {
	dir, err := os.Getwd()
	if err != nil {
		dir = ""
	}
	return InterpreterFrom(dir)
}

// InterpreterFrom is Interpreter searching for the .venv from dir upward instead of the
// working directory ("" searches nowhere).
func InterpreterFrom(dir string) string {
	if p := os.Getenv("PYVISOR_PYTHON"); p != "" {
		return p
	}
	if dir != "" {
		for {
			candidate := filepath.Join(dir, ".venv", "bin", "python")
			if st, err := os.Stat(candidate); err == nil && !st.IsDir() {
				return candidate
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "python3"
}
