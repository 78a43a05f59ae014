package runtime_test

import (
	"context"
	"encoding/json"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/telemetry"
)

var _ = Describe("A caller's bad input", Label("python"), func() {
	runtime := survivingWorker() // never blamed on the worker

	DescribeTable("is refused at once with ErrInvalidArgument naming the problem, before it leaves Go",
		func(ctx context.Context, opts []pyvisor.CallOption, problem string) {
			_, err := runtime().Execute(ctx, "default", "echo", map[string]any{"value": 1}, opts...)
			Expect(err).To(MatchError(pyvisor.ErrInvalidArgument))
			Expect(err.Error()).To(ContainSubstring(problem))
			Expect(stats(runtime()).Completed).To(BeZero(), "it never reached the pool")
		},
		Entry("a correlation id with a line break", telemetry.WithCorrelationID(context.Background(), "req-1\nforged"), nil, "correlation id has byte 0x0a"),
		Entry("a correlation id that is not ASCII", telemetry.WithCorrelationID(context.Background(), "réq-1"), nil, "only printable ASCII"),
		Entry("a correlation id too long", telemetry.WithCorrelationID(context.Background(), strings.Repeat("x", 129)), nil, "at most 128"),
		Entry("metadata with a carriage return", context.Background(), []pyvisor.CallOption{pyvisor.WithMetadata(map[string]string{"k": "a\rb"})}, `metadata "k" has byte 0x0d`),
		Entry("an empty metadata key", context.Background(), []pyvisor.CallOption{pyvisor.WithMetadata(map[string]string{"": "v"})}, "empty metadata key"),
		Entry("a session id with a NUL", context.Background(), []pyvisor.CallOption{pyvisor.WithSession("s\x00forged")}, "session id has byte 0x00"),
		Entry("a session id too long", context.Background(), []pyvisor.CallOption{pyvisor.WithSession(strings.Repeat("s", 129))}, "session id is 129 bytes, at most 128"),
	)

	It("refuses a tool name of a megabyte without echoing it", func() {
		_, err := runtime().Execute(context.Background(), "default", strings.Repeat("t", 1<<20), nil)
		Expect(err).To(MatchError(pyvisor.ErrInvalidArgument))
		Expect(err.Error()).To(ContainSubstring("tool name is 1048576 bytes, at most 256"))
		Expect(len(err.Error())).To(BeNumerically("<", 512), "the error bounds what it echoes")
	})

	DescribeTable("is refused by the worker before the tool runs, as invalid, and the worker serves on",
		func(args string, problem string) {
			_, err := runtime().Execute(context.Background(), "default", "echo", json.RawMessage(args))
			Expect(err).To(MatchError(pyvisor.ErrInvalidArgument))
			Expect(err.Error()).To(ContainSubstring(problem))
		},
		Entry("arguments nested too deeply for Python's parser", `{"value":`+strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)+`}`, "nested too deeply"),
		Entry("NaN in the arguments (results refuse it too)", `{"value": NaN}`, "NaN and Infinity are refused"),
		Entry("Infinity in the arguments", `{"value": Infinity}`, "NaN and Infinity are refused"),
	)
})
