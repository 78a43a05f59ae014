package bridge_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/bridge"
)

var _ = Describe("A Python worker", Label("python"), func() {
	It("starts, hands its socket over and describes its tools", func() {
		p, _ := worker()
		Expect(p.PID()).To(BeNumerically(">", 0))

		info, err := p.Client().Describe(context.Background())
		Expect(err).NotTo(HaveOccurred())
		Expect(info.PID).To(Equal(p.PID()))
		Expect(info.ProtocolVersion).To(Equal(bridge.ProtocolVersion))
		Expect(info.WorkerID).To(Equal("spec-0"))
		Expect(info.PythonVersion).To(MatchRegexp(`^3\.\d+\.\d+`))

		byName := map[string]bridge.Tool{}
		for _, t := range info.Tools {
			byName[t.Name] = t
		}
		Expect(byName).To(HaveKey("add"))
		Expect(byName["count"].Streaming).To(BeTrue())
		Expect(byName["echo"].Async).To(BeTrue())
		var schema map[string]any
		Expect(json.Unmarshal(byName["add"].Parameters, &schema)).To(Succeed())
		Expect(schema).To(HaveKeyWithValue("required", ConsistOf("a", "b")))
		Expect(schema["properties"]).To(HaveKeyWithValue("a", HaveKeyWithValue("type", "integer")))
	})

	It("serves on a Unix socket only its own user can reach", func() {
		p, _ := worker()
		sock, err := os.Stat(p.Address())
		Expect(err).NotTo(HaveOccurred())
		Expect(sock.Mode() & os.ModeSocket).NotTo(BeZero())
		Expect(sock.Mode().Perm()).To(Equal(os.FileMode(0o600)))
		dir, err := os.Stat(filepath.Dir(p.Address()))
		Expect(err).NotTo(HaveOccurred())
		Expect(dir.Mode().Perm()).To(Equal(os.FileMode(0o700)))
	})

	It("runs a tool and returns its JSON result", func() {
		p, _ := worker()
		Expect(decoded(p, "add", map[string]int{"a": 40, "b": 2})).To(BeNumerically("==", 42))
		Expect(decoded(p, "echo", map[string]any{"value": map[string]any{"nested": []any{"ü", 1.5, nil}}})).
			To(Equal(map[string]any{"nested": []any{"ü", 1.5, nil}}))
		Expect(decoded(p, "echo_sync", map[string]any{"value": "from a thread"})).To(Equal("from a thread"))
	})

	It("carries raw bytes both ways next to the JSON", func() {
		p, _ := worker()
		res, err := p.Client().Execute(context.Background(), bridge.Request{Tool: "payload_size", Payload: make([]byte, 300_000)})
		Expect(err).NotTo(HaveOccurred())
		Expect(string(res.JSON)).To(Equal("300000"))

		res, err = call(p, "large", map[string]int{"size": 1 << 20})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Payload).To(HaveLen(1 << 20))
		Expect(string(res.JSON)).To(Equal("null"))
	})

	It("streams every chunk of a generator, in order", func() {
		p, _ := worker()
		for _, tool := range []string{"count", "count_sync"} {
			var got []float64
			for res, err := range p.Client().ExecuteStream(context.Background(), bridge.Request{Tool: tool, Args: map[string]int{"n": 25}}) {
				Expect(err).NotTo(HaveOccurred())
				var chunk struct{ I float64 }
				Expect(res.Decode(&chunk)).To(Succeed())
				got = append(got, chunk.I)
			}
			Expect(got).To(HaveLen(25), tool)
			for i, v := range got {
				Expect(v).To(BeNumerically("==", i), tool)
			}
		}
	})

	It("keeps per-session state between calls until the session is closed", func() {
		p, _ := worker()
		ctx := context.Background()
		id, err := p.Client().OpenSession(ctx, "")
		Expect(err).NotTo(HaveOccurred())
		Expect(id).NotTo(BeEmpty())

		_, err = p.Client().Execute(ctx, bridge.Request{Tool: "session_set", SessionID: id, Args: map[string]any{"key": "k", "value": []int{1, 2}}})
		Expect(err).NotTo(HaveOccurred())
		res, err := p.Client().Execute(ctx, bridge.Request{Tool: "session_get", SessionID: id, Args: map[string]any{"key": "k"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(string(res.JSON)).To(Equal("[1,2]"))

		existed, err := p.Client().CloseSession(ctx, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(existed).To(BeTrue())
		_, err = p.Client().Execute(ctx, bridge.Request{Tool: "session_get", SessionID: id, Args: map[string]any{"key": "k"}})
		Expect(err).To(MatchError(bridge.ErrUnknownSession))
		Expect(err).To(MatchError(pyvisor.ErrUnknownSession), "the facade exports the same sentinel")
	})

	It("answers heartbeats with its clock and how many calls are in flight", func() {
		p, _ := worker()
		ctx := context.Background()
		go func() {
			defer GinkgoRecover()
			_, _ = call(p, "sleep", map[string]float64{"seconds": 1})
		}()
		Eventually(func() int {
			pong, err := p.Client().Heartbeat(ctx, 7, "hb-1")
			Expect(err).NotTo(HaveOccurred())
			Expect(pong.Sequence).To(Equal(uint64(7)))
			Expect(pong.PID).To(Equal(p.PID()))
			Expect(pong.WorkerTime).To(BeTemporally("~", time.Now(), time.Second))
			return pong.InFlight
		}).Should(Equal(1))
		Eventually(func() (int, error) {
			pong, err := p.Client().Heartbeat(ctx, 8, "hb-2")
			return pong.InFlight, err
		}).Should(Equal(0))
	})

	It("forwards its log lines through zerolog with their level and fields", func() {
		p, logs := worker()
		decoded(p, "log", map[string]string{"message": "from python", "level": "warning"})
		decoded(p, "print_stdout", map[string]string{"text": "printed by a tool"})
		Eventually(func() []map[string]any { return logs.Matching("from python") }).Should(ContainElement(And(
			HaveKeyWithValue("level", "warn"),
			HaveKeyWithValue("source", "python"),
			HaveKeyWithValue("worker", "spec-0"),
			HaveKeyWithValue("pid", BeNumerically("==", p.PID())),
			HaveKeyWithValue("logger", "pyvisor_worker.examples"),
		)))
		// print() never reaches the handshake channel: it arrives as a stderr line.
		Eventually(func() []map[string]any { return logs.Matching("printed by a tool") }).Should(ContainElement(
			HaveKeyWithValue("stream", "stderr")))
	})

	It("serves over TCP on 127.0.0.1 when asked, with a per-worker token", func() {
		p, _ := worker(bridge.WithTCP())
		Expect(p.Address()).To(HavePrefix("127.0.0.1:"))
		stillServes(p)
	})
})

var _ = Describe("What a tool writes", Label("python"), func() {
	It("cannot forge a log record: stdout and stderr arrive as plain text lines", func() {
		p, logs := worker()
		forged := `{"level":"error","message":"forged","source":"go","worker":"spec-9","correlation_id":"someone-else"}`
		decoded(p, "print_stdout", map[string]string{"text": forged})
		decoded(p, "write_stderr", map[string]string{"text": forged})
		Eventually(func() []map[string]any { return logs.Matching(forged) }).Should(HaveLen(2))
		for _, line := range logs.Matching(forged) {
			Expect(line).To(And(
				HaveKeyWithValue("source", "python"), HaveKeyWithValue("stream", "stderr"),
				HaveKeyWithValue("worker", "spec-0"), HaveKeyWithValue("level", "info"),
				Not(HaveKey("correlation_id")),
			))
		}
		Expect(logs.Matching("forged")).To(BeEmpty(), "never parsed into a record")
	})

	It("cannot override the fields Go sets on its log records, and no forwarded line has a duplicate key", func() {
		p, logs := worker()
		decoded(p, "log", map[string]any{"message": "with forged extras", "extra": map[string]any{
			"source": "go", "worker": "spec-9", "pid": 1, "pool": "other", "stream": "stdout", "note": "kept",
		}})
		Eventually(func() []map[string]any { return logs.Matching("with forged extras") }).Should(ConsistOf(And(
			HaveKeyWithValue("source", "python"), HaveKeyWithValue("worker", "spec-0"),
			HaveKeyWithValue("pid", BeNumerically("==", p.PID())), HaveKeyWithValue("note", "kept"),
			Not(HaveKey("stream")), Not(HaveKey("pool")),
		)))
		Expect(logs.DuplicateKeys()).To(BeEmpty())
	})

	It("cannot inject a span: a printed span record is a plain line", func() {
		var mu sync.Mutex
		var spans []bridge.PythonSpan
		p, logs := worker(bridge.WithSpanSink(func(s bridge.PythonSpan) { mu.Lock(); spans = append(spans, s); mu.Unlock() }))
		injected := `{"pyvisor_span": {"name": "injected", "trace_id": "0123456789abcdef0123456789abcdef"}}`
		decoded(p, "print_stdout", map[string]string{"text": injected})
		Eventually(func() []map[string]any { return logs.Matching(injected) }).Should(HaveLen(1))
		mu.Lock()
		defer mu.Unlock()
		Expect(spans).NotTo(ContainElement(HaveField("Name", "injected")))
	})
})
