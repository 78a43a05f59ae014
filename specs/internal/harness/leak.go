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
	ignoring   []any
	arenas     int
}

// Take records the goroutines running now; runtimeDir is where the spec's workers keep
// their socket directories and must be empty after it.
func Take(runtimeDir string) Snapshot {
	return Snapshot{goroutines: gleak.Goroutines(), runtimeDir: runtimeDir, arenas: SharedMemoryInUse()}
}

// SharedMemoryInUse counts this process's open pyvisor memfds and mappings of them:
// the shared-memory arenas it still holds.
func SharedMemoryInUse() int {
	n := 0
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, "/memfd:pyvisor") {
			n++
		}
	}
	maps, _ := os.ReadFile("/proc/self/maps")
	return n + strings.Count(string(maps), "/memfd:pyvisor")
}

// Check fails the spec if a goroutine, a child process, a socket directory or a
// shared-memory arena remains.
func (s Snapshot) Check() {
	Eventually(ChildProcesses).WithTimeout(5*time.Second).Should(BeEmpty(), "child processes left behind")
	Eventually(func() ([]string, error) { return entries(s.runtimeDir) }).WithTimeout(5*time.Second).
		Should(BeEmpty(), "socket directories left behind")
	Eventually(gleak.Goroutines).WithTimeout(5 * time.Second).ShouldNot(gleak.HaveLeaked(append([]any{s.goroutines}, s.ignoring...)...))
	Eventually(SharedMemoryInUse).WithTimeout(5*time.Second).Should(BeNumerically("<=", s.arenas), "shared-memory arenas left mapped or open")
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

// stat is what the specs read of /proc/<pid>/stat.
type stat struct {
	pid, comm, state string
	ppid, pgrp       int
}

// readStat parses /proc/<pid>/stat; comm may hold spaces, so the fields after it are
// split after the last ')'.
func readStat(path string) (stat, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return stat{}, false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return stat{}, false
	}
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 3 {
		return stat{}, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	pgrp, _ := strconv.Atoi(fields[2])
	return stat{pid: strings.TrimSpace(s[:open]), comm: s[open+1 : closing], state: fields[0], ppid: ppid, pgrp: pgrp}, true
}

// live lists every process that is not a zombie.
func live() []stat {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := make([]stat, 0, len(paths))
	for _, path := range paths {
		if st, ok := readStat(path); ok && st.state != "Z" {
			out = append(out, st)
		}
	}
	return out
}

// ChildProcesses lists "pid command" of this process's live children.
func ChildProcesses() []string {
	self := os.Getpid()
	var out []string
	for _, st := range live() {
		if st.ppid == self {
			out = append(out, st.pid+" "+st.comm)
		}
	}
	return out
}

// Alive reports whether a process with this pid exists and is not a zombie.
func Alive(pid int) bool {
	st, ok := readStat("/proc/" + strconv.Itoa(pid) + "/stat")
	return ok && st.state != "Z"
}

// GroupAlive reports whether any live process belongs to process group pgid.
func GroupAlive(pgid int) bool {
	for _, st := range live() {
		if st.pgrp == pgid {
			return true
		}
	}
	return false
}
