// Package reference is what pyvisor's benchmarks measure the runtime against: the
// cheapest way to call the same Python tool, a generated gRPC client with nothing of
// pyvisor's in between.
package reference

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/pyvisor/pyvisor/messages/workerv1"
	"github.com/pyvisor/pyvisor/telemetry"
)

// EchoArgs is the 100-byte JSON argument object the benchmarks send to the example
// tool echo.
var EchoArgs = json.RawMessage(`{"value":"` + strings.Repeat("x", 100-len(`{"value":""}`)) + `"}`)

// Echo calls echo with EchoArgs through c and checks that it answered with a result.
func Echo(ctx context.Context, c workerv1.WorkerServiceClient) error {
	return echo(ctx, c, &workerv1.ExecuteRequest{Tool: "echo", Arguments: EchoArgs})
}

// CorrelatedEcho is Echo carrying a new correlation id the way the pool sends one: in
// the request and as x-correlation-id metadata, with the trailer read.
func CorrelatedEcho(ctx context.Context, c workerv1.WorkerServiceClient) error {
	id := telemetry.NewCorrelationID()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-correlation-id", id)
	var trailer metadata.MD
	return echo(ctx, c, &workerv1.ExecuteRequest{Tool: "echo", Arguments: EchoArgs, CorrelationId: id}, grpc.Trailer(&trailer))
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
