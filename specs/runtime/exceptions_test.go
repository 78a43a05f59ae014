package runtime_test

import (
	"context"
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("A tool that raises", Label("python"), func() {
	runtime := survivingWorker()

	kinds := []string{"CancelledError", "KeyboardInterrupt", "SystemExit", "GeneratorExit", "UserBaseError"}
	typeName := map[string]string{
		"CancelledError": "asyncio.exceptions.CancelledError",
		"UserBaseError":  "pyvisor_worker.examples.UserBaseError",
	}
	expectToolError := func(err error, kind string) {
		GinkgoHelper()
		var toolErr *pyvisor.ToolError
		Expect(errors.As(err, &toolErr)).To(BeTrue(), "a *ToolError, got %v", err)
		want := kind
		if n, ok := typeName[kind]; ok {
			want = n
		}
		Expect(toolErr.Type).To(Equal(want))
		Expect(toolErr.Message).To(Equal("raised by the tool: " + kind))
		Expect(toolErr.Traceback).To(ContainSubstring("_base_exception"))
	}

	for _, kind := range kinds {
		It("ends its call with a *ToolError for "+kind+", sync or async, and the worker serves on", func() {
			for _, tool := range []string{"raise_base", "raise_base_async"} {
				_, err := execute(runtime(), tool, map[string]string{"type": kind})
				expectToolError(err, kind)
			}
		})

		It("ends its stream with a *ToolError for "+kind+" after the chunks it yielded, sync or async generator", func() {
			for _, tool := range []string{"raise_base_stream", "raise_base_stream_async"} {
				var chunks int
				var last error
				for _, err := range runtime().Stream(context.Background(), "default", tool, map[string]string{"type": kind}) {
					if err != nil {
						last = err
						break
					}
					chunks++
				}
				Expect(chunks).To(Equal(1), tool)
				expectToolError(last, kind)
			}
		})
	}
})

var _ = Describe("A tool whose exception is hostile", Label("python"), func() {
	DescribeTable("still ends its call with a *ToolError, and its worker serves on",
		func(tool, wantMessage string) {
			rt, _ := start(pool(1, func(p *pyvisor.PoolConfig) {
				p.Tools = []string{"hostile_errors"}
				p.Dir = modelTools
			}))
			pid := stats(rt).Workers[0].PID
			_, err := execute(rt, tool, nil)
			var toolErr *pyvisor.ToolError
			Expect(errors.As(err, &toolErr)).To(BeTrue(), "a *ToolError, got %v", err)
			Expect(toolErr.Message).To(ContainSubstring(wantMessage))
			Expect(len(toolErr.Message)).To(BeNumerically("<", 70_000))
			got, err := execute(rt, "fine", nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(got.JSON)).To(Equal(`"ok"`))
			Expect(stats(rt).Workers[0].PID).To(Equal(pid), "the same worker")
		},
		Entry("an exception whose __str__ raises", "hostile_str", "whose __str__ raised RuntimeError"),
		Entry("an exception message of 32 MiB, cut to fit", "huge_message", "[cut: "),
	)
})
