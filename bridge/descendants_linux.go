//go:build linux

package bridge

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// killTagged sends SIGKILL to every process whose environment holds
// processTagEnv=tag: what a worker's tools started, wherever it went (another session, an
// orphan adopted by init after the worker died abruptly), unless it cleared its
// environment. Call it once the worker itself is gone.
func killTagged(tag string) {
	if tag == "" {
		return
	}
	want := []byte(processTagEnv + "=" + tag + "\x00") // environ is NUL-separated
	inner := append([]byte{0}, want...)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		environ, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue // gone, or not ours to read
		}
		if bytes.HasPrefix(environ, want) || bytes.Contains(environ, inner) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// killDescendants sends SIGKILL to every process below pid in the process tree, read
// from /proc: those in another process group or session too (a tool's child that called
// setsid), which a signal to the worker's group misses. The worker is its descendants'
// subreaper, so orphans stay below it while it lives; call this before it dies.
func killDescendants(pid int) {
	children := map[int][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 > len(stat) {
			continue
		}
		fields := bytes.Fields(stat[i+2:])
		if len(fields) < 2 {
			continue
		}
		if parent, err := strconv.Atoi(string(fields[1])); err == nil {
			children[parent] = append(children[parent], child)
		}
	}
	todo := append([]int(nil), children[pid]...)
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		_ = syscall.Kill(p, syscall.SIGKILL)
		todo = append(todo, children[p]...)
	}
}
