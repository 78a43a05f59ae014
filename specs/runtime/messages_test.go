package runtime_test

import (
	"context"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

var _ = Describe("Error messages", Label("python"), func() {
	var rt *pyvisor.Runtime
	BeforeEach(func() { rt, _ = start(pool(1)) })

	It("name the pools there are when a pool is unknown", func() {
		_, err := rt.Execute(context.Background(), "nope", "add", nil)
		Expect(err).To(MatchError(pyvisor.ErrUnknownPool))
		Expect(err.Error()).To(ContainSubstring(`unknown pool "nope" (pools: default)`))
	})

	It("say the call once", func() {
		_, err := execute(rt, "no_such_tool", nil)
		Expect(err).To(MatchError(pyvisor.ErrUnknownTool))
		Expect(strings.Count(err.Error(), "execute no_such_tool")).To(Equal(1), err.Error())
		Expect(err.Error()).To(HavePrefix("pyvisor: execute no_such_tool (correlation id "))
	})

	It("refuse a struct whose fields are unexported, naming them, before anything is sent", func() {
		type args struct{ a, b int }
		_, err := execute(rt, "add", args{1, 2})
		Expect(err).To(MatchError(pyvisor.ErrInvalidArgument))
		Expect(err.Error()).To(ContainSubstring("fields (a, b) are unexported"))
		Expect(stats(rt).Workers[0].Calls).To(BeZero())
	})

	It("name what was sent when a required argument is missing", func() {
		type Args struct{ A, B int } // exported, but no json tags: "A" and "B"
		_, err := execute(rt, "add", Args{1, 2})
		Expect(err).To(MatchError(pyvisor.ErrInvalidArgument))
		Expect(err.Error()).To(ContainSubstring("missing required argument 'a' for tool 'add' (sent: A, B; parameters: a, b; Go struct fields without json tags? Tag them: `json:\"a\"`)"))
	})

	It("say how to call a streaming tool from Go", func() {
		_, err := execute(rt, "count", map[string]int{"n": 1})
		Expect(err).To(MatchError(pyvisor.ErrWrongCallKind))
		Expect(err.Error()).To(ContainSubstring("Runtime.Stream or pyvisor.CallStream"))
	})
})
