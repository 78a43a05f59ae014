//go:build linux

package bridge

import (
	"os/exec"
	"runtime"
	"syscall"
)

// spawn starts cmd in its own process group with a parent-death signal, and reaps it.
//
// Linux delivers the parent-death signal when the *thread* that forked the child exits,
// not the process, and the Go runtime retires threads. So the fork happens on a goroutine
// locked to its OS thread, and that goroutine stays (locked) until the child is reaped:
// the thread can only exit after the child has. exited receives Wait's error.
func spawn(cmd *exec.Cmd, exited func(error)) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited(cmd.Wait())
	}()
	return <-started
}
