package reference

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverStopGrace is how long a server gets after SIGTERM before SIGKILL.
const serverStopGrace = 2 * time.Second

// server is one of the package's Python scripts, run from a private temporary directory
// in a process group of its own: python SCRIPT SOCKET PARENT_PID [ARGS...]. It is up
// once it has printed "<tag>|<socket>" on stdout.
type server struct {
	name   string // for errors: "echo server"
	sock   string
	cmd    *exec.Cmd
	dir    string
	exited chan struct{} // closed once the process is reaped
	waited error         // Wait's error, set before exited is closed
	stderr *tail
}

// startServer writes script to a new directory (mode 0700) as file, runs it and waits
// for its ready line (at most timeout, or until ctx is done). On every error path it
// leaves no process, socket or directory behind.
func startServer(ctx context.Context, python, name, file string, script []byte, tag string, timeout time.Duration, args ...string) (_ *server, err error) {
	dir, err := os.MkdirTemp("", "pyvisor-"+strings.TrimSuffix(file, "_server.py")+"-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, script, 0o600); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "echo.sock")
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python, append([]string{path, sock, strconv.Itoa(os.Getpid())}, args...)...)
	cmd.Stdout = w
	s := &server{name: name, sock: sock, cmd: cmd, dir: dir, exited: make(chan struct{}), stderr: &tail{max: 4096}}
	cmd.Stderr = s.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	_ = w.Close() // the child has its own copy
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("start the %s: %w", name, err)
	}
	go func() {
		s.waited = cmd.Wait()
		close(s.exited)
	}()
	defer func() {
		if err != nil {
			_ = s.stop()
		}
	}()

	// The first line, then drain stdout until the process closes it, so that it can
	// never block on a write.
	line := make(chan string, 1)
	go func() {
		defer r.Close()
		br := bufio.NewReader(r)
		first, _ := br.ReadString('\n')
		line <- strings.TrimSpace(first)
		_, _ = br.WriteTo(io.Discard)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case l := <-line:
		if l == "" { // stdout closed: the process is exiting
			select {
			case <-s.exited:
				return nil, fmt.Errorf("%s exited before serving: %v; stderr: %s", name, s.waited, s.stderr)
			case <-timer.C:
			}
		}
		if l != tag+"|"+sock {
			return nil, fmt.Errorf("%s printed %q, not the %s line; stderr: %s", name, l, tag, s.stderr)
		}
	case <-s.exited:
		return nil, fmt.Errorf("%s exited before serving: %v; stderr: %s", name, s.waited, s.stderr)
	case <-timer.C:
		return nil, fmt.Errorf("%s not serving within %v; stderr: %s", name, timeout, s.stderr)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s, nil
}

// PID is the server's process id (and process group id).
func (s *server) PID() int { return s.cmd.Process.Pid }

// Dir is the temporary directory holding the script and the socket, removed by stop.
func (s *server) Dir() string { return s.dir }

// stop ends the process group (SIGTERM, then SIGKILL after serverStopGrace), waits for
// the reaper, and removes the directory. It fails if SIGKILL was needed or the server
// exited with an error.
func (s *server) stop() error {
	var err error
	pgid := s.cmd.Process.Pid
	select {
	case <-s.exited:
		if s.waited != nil {
			err = fmt.Errorf("%s had exited: %v; stderr: %s", s.name, s.waited, s.stderr)
		}
	default:
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.exited:
			if s.waited != nil {
				err = fmt.Errorf("%s: %v; stderr: %s", s.name, s.waited, s.stderr)
			}
		case <-time.After(serverStopGrace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.exited
			err = fmt.Errorf("%s ignored SIGTERM for %v: killed", s.name, serverStopGrace)
		}
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}
