// Package clusterharness drives pyvisor node processes (specs/internal/clusternode) for
// the specs: start one with a config, send it calls as JSON lines, read its spans and
// logs back, kill or stop it.
package clusterharness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor/internal/freeport"
	"github.com/pyvisor/pyvisor/internal/spanfile"
	"github.com/pyvisor/pyvisor/internal/spantree"
	"github.com/pyvisor/pyvisor/specs/internal/clusterwire"
)

// Command and Answer are clusternode's JSON lines.
type (
	Command = clusterwire.Command
	Answer  = clusterwire.Answer
)

// Node is one clusternode process.
type Node struct {
	Name, Dir string
	Config    map[string]any
	Env       []string // extra environment
	launcher  Launcher
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	Ready     Answer // its first line: name, metrics address
	Exited    chan struct{}

	mu      sync.Mutex
	next    int
	waiting map[int]chan Answer
}

// Pool is a pool a node runs: 1 worker of the example tools unless told.
func Pool(name string, extra ...any) map[string]any {
	p := map[string]any{"name": name, "tools": []string{"pyvisor_worker.examples"}, "workers": 1}
	for i := 0; i+1 < len(extra); i += 2 {
		p[extra[i].(string)] = extra[i+1]
	}
	return p
}

// FreePorts returns n TCP ports free on loopback now.
func FreePorts(n int) []int {
	ports, err := freeport.Take(n)
	Expect(err).NotTo(HaveOccurred())
	return ports
}

// Launcher starts node processes: Bin is the clusternode command (Build), Dir where
// each node's files go (a directory per node: config, spans, log, its workers'
// sockets), Python the workers' interpreter.
type Launcher struct{ Bin, Dir, Python string }

// Build builds the clusternode command into dir and returns its path.
func Build(dir string) string {
	bin := filepath.Join(dir, "clusternode")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/pyvisor/pyvisor/specs/internal/clusternode").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "build clusternode: %s", out)
	return bin
}

// Start starts a node process with config (and env, NAME=value, on top of this
// process's) and waits until it serves.
func (l Launcher) Start(name string, config map[string]any, env ...string) *Node {
	dir := filepath.Join(l.Dir, name)
	Expect(os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)).To(Succeed())
	n := &Node{Name: name, Dir: dir, Config: config, Env: env, launcher: l, waiting: map[int]chan Answer{}, Exited: make(chan struct{})}
	b, err := json.Marshal(config)
	Expect(err).NotTo(HaveOccurred())
	cfgPath := filepath.Join(dir, "config.json")
	Expect(os.WriteFile(cfgPath, b, 0o644)).To(Succeed())
	n.cmd = exec.Command(l.Bin, "-config", cfgPath, "-spans", n.Spans(), "-log", n.Log())
	// Each node's workers keep their sockets under its own TMPDIR: a node killed leaves
	// its socket directories there, not in the suite's.
	n.cmd.Env = append(append(os.Environ(), "PYVISOR_PYTHON="+l.Python, "TMPDIR="+filepath.Join(dir, "tmp")), env...)
	n.cmd.Stderr = GinkgoWriter
	n.stdin, err = n.cmd.StdinPipe()
	Expect(err).NotTo(HaveOccurred())
	stdout, err := n.cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(n.cmd.Start()).To(Succeed())
	ready := make(chan Answer, 1)
	go n.read(stdout, ready)
	select {
	case n.Ready = <-ready:
	case <-n.Exited:
		Fail(fmt.Sprintf("node %s exited before it was ready", name))
	case <-time.After(60 * time.Second):
		n.Kill()
		Fail(fmt.Sprintf("node %s not ready within 60s", name))
	}
	return n
}

func (n *Node) Spans() string { return filepath.Join(n.Dir, "spans.jsonl") }
func (n *Node) Log() string   { return filepath.Join(n.Dir, "log.jsonl") }

// Restart starts the node again with its config, as a new process.
func (n *Node) Restart() *Node { return n.launcher.Start(n.Name, n.Config, n.Env...) }

func (n *Node) read(stdout io.Reader, ready chan<- Answer) {
	defer GinkgoRecover()
	defer close(n.Exited)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var a Answer
		if json.Unmarshal(sc.Bytes(), &a) != nil {
			fmt.Fprintf(GinkgoWriter, "%s stdout: %s\n", n.Name, sc.Text())
			continue
		}
		if a.Ready {
			ready <- a
			continue
		}
		n.mu.Lock()
		ch := n.waiting[a.ID]
		delete(n.waiting, a.ID)
		n.mu.Unlock()
		if ch != nil {
			ch <- a
		}
	}
	_ = n.cmd.Wait()
}

// Send sends c and returns where its Answer comes.
func (n *Node) Send(c Command) <-chan Answer {
	ch := make(chan Answer, 1)
	n.mu.Lock()
	n.next++
	c.ID = n.next
	n.waiting[c.ID] = ch
	n.mu.Unlock()
	b, err := json.Marshal(c)
	Expect(err).NotTo(HaveOccurred())
	_, err = n.stdin.Write(append(b, '\n'))
	Expect(err).NotTo(HaveOccurred())
	return ch
}

// Ask sends c and waits for its Answer.
func (n *Node) Ask(c Command) Answer {
	select {
	case a := <-n.Send(c):
		return a
	case <-n.Exited:
		Fail(fmt.Sprintf("node %s exited", n.Name))
	case <-time.After(60 * time.Second):
		Fail(fmt.Sprintf("node %s did not Answer %+v in 60s", n.Name, c))
	}
	return Answer{}
}

// Call makes a call from this node with a 10 s deadline (unless c has one).
func (n *Node) Call(c Command) Answer {
	c.Op = "call"
	if c.TimeoutMS == 0 {
		c.TimeoutMS = 10_000
	}
	return n.Ask(c)
}

func (n *Node) Members() []string { return n.Ask(Command{Op: "members"}).Members }
func (n *Node) PIDs() []int       { return n.Ask(Command{Op: "pids"}).PIDs }

// Stop stops the node gracefully and waits for its process to end.
func (n *Node) Stop() {
	a := n.Ask(Command{Op: "stop"})
	Expect(a.Error).To(BeEmpty())
	Eventually(n.Exited).WithTimeout(30 * time.Second).Should(BeClosed())
}

// Kill SIGKILLs the node's process and waits for it to end.
func (n *Node) Kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	Eventually(n.Exited).WithTimeout(10 * time.Second).Should(BeClosed())
}

// Alive reports whether a process with pid runs (a zombie does not).
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] != 'Z'
		}
	}
	return true
}

// TraceOf reads the spans of trace from every node's span file.
func TraceOf(trace string, nodes ...*Node) []spantree.Span {
	var paths []string
	for _, n := range nodes {
		paths = append(paths, n.Spans())
	}
	spans, err := spanfile.Read(trace, paths...)
	Expect(err).NotTo(HaveOccurred())
	return spans
}

// Ancestry is the chain of span names from span up to its root, "service: name" each.
func Ancestry(spans []spantree.Span, leaf spantree.Span) []string {
	byID := map[string]spantree.Span{}
	for _, s := range spans {
		byID[s.ID] = s
	}
	var chain []string
	for s, ok := leaf, true; ok; s, ok = byID[s.Parent] {
		if s.Name == "queue wait" { // there when the call waited for a worker: not a hop
			continue
		}
		who := s.Service
		if node := s.Attrs["pyvisor.node"]; node != "" && node != s.Service { // a Python span: whose worker
			who += "@" + node
		}
		chain = append([]string{who + ": " + s.Name}, chain...)
		if s.Parent == "" {
			break
		}
	}
	return chain
}

// LogLines are the node's JSON log lines.
func LogLines(n *Node) []map[string]any {
	b, err := os.ReadFile(n.Log())
	Expect(err).NotTo(HaveOccurred())
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// FreePortsAt fails unless every port can be listened on at 127.0.0.1 now.
func FreePortsAt(ports ...int) error {
	for _, p := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return err
		}
		_ = ln.Close()
	}
	return nil
}
