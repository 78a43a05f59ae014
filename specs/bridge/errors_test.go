package bridge_test

import (
	"context"
	"errors"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/messages/workerv1"
)

var _ = Describe("Bad calls to a worker", Label("python"), func() {
	var p *bridge.Process
	BeforeEach(func() { p, _ = worker() })

	It("return a Python exception as a *ToolError with type, message and traceback, and the worker keeps serving", func() {
		_, err := call(p, "raise", map[string]string{"message": "no such widget", "type": "KeyError"})
		var toolErr *bridge.ToolError
		Expect(err).To(BeAssignableToTypeOf(toolErr))
		toolErr = err.(*bridge.ToolError)
		Expect(toolErr.Tool).To(Equal("raise"))
		Expect(toolErr.Type).To(Equal("KeyError"))
		Expect(toolErr.Message).To(ContainSubstring("no such widget"))
		Expect(toolErr.Traceback).To(HavePrefix("Traceback (most recent call last):"))
		Expect(toolErr.Traceback).To(ContainSubstring("examples.py"))
		stillServes(p)
	})

	It("name an unknown tool with ErrUnknownTool and list the registered ones", func() {
		_, err := call(p, "no_such_tool", nil)
		Expect(err).To(MatchError(bridge.ErrUnknownTool))
		Expect(err.Error()).To(ContainSubstring("no_such_tool"))
		Expect(err.Error()).To(ContainSubstring("add"))
		stillServes(p)
	})

	DescribeTable("reject bad arguments with ErrInvalidArgument naming the parameter",
		func(args any, says string) {
			_, err := call(p, "add", args)
			Expect(err).To(MatchError(bridge.ErrInvalidArgument))
			Expect(err.Error()).To(ContainSubstring(says))
			stillServes(p)
		},
		Entry("a missing argument", map[string]any{"a": 1}, "'b'"),
		Entry("an unknown argument", map[string]any{"a": 1, "b": 2, "c": 3}, "'c'"),
		Entry("a wrongly typed argument", map[string]any{"a": "one", "b": 2}, "'a'"),
		Entry("arguments that are not an object", []int{1, 2}, "JSON object"),
	)

	It("reject arguments Go cannot encode before anything is sent", func() {
		_, err := call(p, "echo", map[string]any{"value": make(chan int)})
		Expect(err).To(MatchError(bridge.ErrInvalidArgument))
	})

	It("tell a streaming tool called as a plain one, and the reverse, with ErrWrongCallKind", func() {
		_, err := call(p, "count", map[string]int{"n": 1})
		Expect(err).To(MatchError(bridge.ErrWrongCallKind))
		for _, err := range p.Client().ExecuteStream(context.Background(), bridge.Request{Tool: "add", Args: map[string]int{"a": 1, "b": 1}}) {
			Expect(err).To(MatchError(bridge.ErrWrongCallKind))
		}
		stillServes(p)
	})

	It("end a stream with a *ToolError when the generator raises", func() {
		var chunks int
		var last error
		for _, err := range p.Client().ExecuteStream(context.Background(), bridge.Request{Tool: "raise_after", Args: map[string]int{"n": 3}}) {
			if err != nil {
				last = err
				break
			}
			chunks++
		}
		Expect(chunks).To(Equal(3))
		var toolErr *bridge.ToolError
		Expect(errors.As(last, &toolErr)).To(BeTrue())
		Expect(toolErr.Type).To(Equal("RuntimeError"))
		stillServes(p)
	})
})

var _ = Describe("Oversized messages", Label("python"), func() {
	It("are refused with ErrMessageTooLarge in either direction, and the worker keeps serving", func() {
		// Payloads in the frames (shared memory off): large ones otherwise go by handle,
		// bounded by SharedMemory.MaxPayload instead (see data_test.go).
		p, _ := worker(bridge.WithMaxMessageBytes(64<<10), bridge.WithSharedMemory(bridge.SharedMemory{Off: true}))

		_, err := call(p, "echo", map[string]string{"value": strings.Repeat("x", 100<<10)})
		Expect(err).To(MatchError(bridge.ErrMessageTooLarge))

		_, err = call(p, "large", map[string]int{"size": 100 << 10})
		Expect(err).To(MatchError(bridge.ErrMessageTooLarge))
		stillServes(p)
	})
})

var _ = Describe("A worker on TCP", Label("python"), func() {
	It("refuses calls without its token", func() {
		p, _ := worker(bridge.WithTCP())
		conn, err := grpc.NewClient("passthrough:///"+p.Address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		_, err = workerv1.NewWorkerServiceClient(conn).Describe(context.Background(), &workerv1.DescribeRequest{})
		Expect(status.Code(err)).To(Equal(codes.Unauthenticated))
		stillServes(p)
	})
})
