package cluster_test

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

	"github.com/pyvisor/pyvisor/internal/spanfile"
	"github.com/pyvisor/pyvisor/internal/spantree"
)

// command and answer are clusternode's JSON lines (specs/internal/clusternode).
type command struct {
	ID         int    `json:"id"`
	Op         string `json:"op"`
	Pool       string `json:"pool,omitempty"`
	Tool       string `json:"tool,omitempty"`
	Args       any    `json:"args,omitempty"`
	Session    string `json:"session,omitempty"`
	TimeoutMS  int    `json:"timeout_ms,omitempty"`
	Idempotent bool   `json:"idempotent,omitempty"`
	Stream     bool   `json:"stream,omitempty"`
	CID        string `json:"cid,omitempty"`
}

type answer struct {
	ID      int               `json:"id"`
	Result  json.RawMessage   `json:"result"`
	Chunks  []json.RawMessage `json:"chunks"`
	Worker  string            `json:"worker"`
	Error   string            `json:"error"`
	Kind    string            `json:"kind"`
	Trace   string            `json:"trace"`
	TookMS  float64           `json:"took_ms"`
	Members []string          `json:"members"`
	PIDs    []int             `json:"pids"`
	Ready   bool              `json:"ready"`
	Node    string            `json:"node"`
	Metrics string            `json:"metrics"`
}

// node is one clusternode process.
type node struct {
	name, dir string
	config    map[string]any
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	ready     answer
	exited    chan struct{}

	mu      sync.Mutex
	next    int
	waiting map[int]chan answer
}

// pool is a pool a node runs: 1 worker of the example tools unless told.
func pool(name string, extra ...any) map[string]any {
	p := map[string]any{"name": name, "tools": []string{"pyvisor_worker.examples"}, "workers": 1}
	for i := 0; i+1 < len(extra); i += 2 {
		p[extra[i].(string)] = extra[i+1]
	}
	return p
}

// freePorts returns n TCP ports free on loopback now.
func freePorts(n int) []int {
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		Expect(ln.Close()).To(Succeed())
	}
	return ports
}

// startNode starts a node process with config and waits until it serves.
func startNode(name string, config map[string]any) *node {
	dir := filepath.Join(workDir, name)
	Expect(os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)).To(Succeed())
	n := &node{name: name, dir: dir, config: config, waiting: map[int]chan answer{}, exited: make(chan struct{})}
	b, err := json.Marshal(config)
	Expect(err).NotTo(HaveOccurred())
	cfgPath := filepath.Join(dir, "config.json")
	Expect(os.WriteFile(cfgPath, b, 0o644)).To(Succeed())
	n.cmd = exec.Command(nodeBin, "-config", cfgPath, "-spans", n.spans(), "-log", n.log())
	// Each node's workers keep their sockets under its own TMPDIR: a node killed leaves
	// its socket directories there, not in the suite's.
	n.cmd.Env = append(os.Environ(), "PYVISOR_PYTHON="+python, "TMPDIR="+filepath.Join(dir, "tmp"))
	n.cmd.Stderr = GinkgoWriter
	n.stdin, err = n.cmd.StdinPipe()
	Expect(err).NotTo(HaveOccurred())
	stdout, err := n.cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(n.cmd.Start()).To(Succeed())
	ready := make(chan answer, 1)
	go n.read(stdout, ready)
	select {
	case n.ready = <-ready:
	case <-n.exited:
		Fail(fmt.Sprintf("node %s exited before it was ready", name))
	case <-time.After(60 * time.Second):
		n.kill()
		Fail(fmt.Sprintf("node %s not ready within 60s", name))
	}
	return n
}

func (n *node) spans() string { return filepath.Join(n.dir, "spans.jsonl") }
func (n *node) log() string   { return filepath.Join(n.dir, "log.jsonl") }

// restart starts the node again with its config, as a new process.
func (n *node) restart() *node { return startNode(n.name, n.config) }

func (n *node) read(stdout io.Reader, ready chan<- answer) {
	defer GinkgoRecover()
	defer close(n.exited)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var a answer
		if json.Unmarshal(sc.Bytes(), &a) != nil {
			fmt.Fprintf(GinkgoWriter, "%s stdout: %s\n", n.name, sc.Text())
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

// send sends c and returns where its answer comes.
func (n *node) send(c command) <-chan answer {
	ch := make(chan answer, 1)
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

// ask sends c and waits for its answer.
func (n *node) ask(c command) answer {
	select {
	case a := <-n.send(c):
		return a
	case <-n.exited:
		Fail(fmt.Sprintf("node %s exited", n.name))
	case <-time.After(60 * time.Second):
		Fail(fmt.Sprintf("node %s did not answer %+v in 60s", n.name, c))
	}
	return answer{}
}

// call makes a call from this node with a 10 s deadline (unless c has one).
func (n *node) call(c command) answer {
	c.Op = "call"
	if c.TimeoutMS == 0 {
		c.TimeoutMS = 10_000
	}
	return n.ask(c)
}

func (n *node) members() []string { return n.ask(command{Op: "members"}).Members }
func (n *node) pids() []int       { return n.ask(command{Op: "pids"}).PIDs }

// stop stops the node gracefully and waits for its process to end.
func (n *node) stop() {
	a := n.ask(command{Op: "stop"})
	Expect(a.Error).To(BeEmpty())
	Eventually(n.exited).WithTimeout(30 * time.Second).Should(BeClosed())
}

// kill SIGKILLs the node's process and waits for it to end.
func (n *node) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	Eventually(n.exited).WithTimeout(10 * time.Second).Should(BeClosed())
}

// alive reports whether a process with pid runs (a zombie does not).
func alive(pid int) bool {
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

// traceOf reads the spans of trace from every node's span file.
func traceOf(trace string, nodes ...*node) []spantree.Span {
	var paths []string
	for _, n := range nodes {
		paths = append(paths, n.spans())
	}
	spans, err := spanfile.Read(trace, paths...)
	Expect(err).NotTo(HaveOccurred())
	return spans
}

// ancestry is the chain of span names from span up to its root, "service: name" each.
func ancestry(spans []spantree.Span, leaf spantree.Span) []string {
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

// logLines are the node's JSON log lines.
func logLines(n *node) []map[string]any {
	b, err := os.ReadFile(n.log())
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
