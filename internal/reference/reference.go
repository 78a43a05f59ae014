// Package reference is what pyvisor's benchmarks measure the runtime against: the
// cheapest way to call the same Python tool, a generated gRPC client with nothing of
// pyvisor's in between (Echo), and the machine's ceilings for a Python gRPC call at all,
// a grpc.aio echo server with no tool, dispatch or pyvisor code (StartEcho), called
// unary or on one long-lived bidirectional stream.
package reference

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/grpc"

	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// EchoArgs is the 100-byte JSON argument object the benchmarks send to the example
// tool echo.
var EchoArgs = json.RawMessage(`{"value":"` + strings.Repeat("x", 100-len(`{"value":""}`)) + `"}`)

// Echo calls echo with EchoArgs through c and checks that it answered with a result.
func Echo(ctx context.Context, c workerv1.WorkerServiceClient) error {
	return echo(ctx, c, &workerv1.ExecuteRequest{Tool: "echo", Arguments: EchoArgs})
}

func echo(ctx context.Context, c workerv1.WorkerServiceClient, req *workerv1.ExecuteRequest, opts ...grpc.CallOption) error {
	resp, err := c.Execute(ctx, req, opts...)
	if err != nil {
		return err
	}
	if resp.GetResult() == nil {
		return fmt.Errorf("echo failed: %v", resp)
	}
	return nil
}
