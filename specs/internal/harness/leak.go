// Package harness is what the spec suites share: leak checks (no goroutine, child
// process or socket file left behind by a spec) and a log sink to read back.
package harness

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
)

// Snapshot is the state a spec must return to.
type Snapshot struct {
	goroutines []gleak.Goroutine
	runtimeDir string
}

// Take records the goroutines running now; runtimeDir is where the spec's workers keep
// their socket directories and must be empty after it.
func Take(runtimeDir string) Snapshot {
	return Snapshot{goroutines: gleak.Goroutines(), runtimeDir: runtimeDir}
}

// Check fails the spec if a goroutine, a child process or a socket directory remains.
func (s Snapshot) Check() {
	Eventually(ChildProcesses).WithTimeout(5*time.Second).Should(BeEmpty(), "child processes left behind")
	Eventually(func() ([]string, error) { return entries(s.runtimeDir) }).WithTimeout(5*time.Second).
		Should(BeEmpty(), "socket directories left behind")
	Eventually(gleak.Goroutines).WithTimeout(5 * time.Second).ShouldNot(gleak.HaveLeaked(s.goroutines))
}

func entries(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, nil
}

// ChildProcesses lists "pid command" of this process's live children.
func ChildProcesses() []string {
	self := os.Getpid()
	var out []string
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == self {
			out = append(out, strings.TrimSuffix(filepath.Base(filepath.Dir(path)), "/")+" "+s[strings.IndexByte(s, '(')+1:i])
		}
	}
	return out
}

// Alive reports whether a process with this pid exists and is not a zombie.
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	fields := strings.Fields(s[i+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

// GroupAlive reports whether any live process belongs to process group pgid.
func GroupAlive(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[i+1:])
		// state ppid pgrp
		if len(fields) >= 3 && fields[0] != "Z" && fields[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}
