//go:build !linux

package bridge

import (
	"os/exec"
	"syscall"
)

// spawn starts cmd in its own process group and reaps it. Without Linux's parent-death
// signal, the worker's own parent watchdog is what ends it if the host dies.
func spawn(cmd *exec.Cmd, exited func(error)) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { exited(cmd.Wait()) }()
	return nil
}
