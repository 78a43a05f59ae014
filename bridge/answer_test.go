package bridge

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// A worker's refusals map to the sentinels, by the Reason's wire string (or the gRPC code).
func TestARefusedCallEndsWithItsSentinel(t *testing.T) {
	c := &Client{}
	failed := func(code codes.Code, reason workerv1.Reason) *workerv1.WorkerFrame {
		return &workerv1.WorkerFrame{Body: &workerv1.WorkerFrame_Failed{Failed: &workerv1.CallFailed{
			Code: int32(code), Reason: workerv1.Wire(reason), Message: "m",
		}}}
	}
	for _, tc := range []struct {
		frame *workerv1.WorkerFrame
		want  error
	}{
		{failed(codes.NotFound, workerv1.Reason_REASON_UNKNOWN_TOOL), ErrUnknownTool},
		{failed(codes.NotFound, workerv1.Reason_REASON_UNKNOWN_SESSION), ErrUnknownSession},
		{failed(codes.InvalidArgument, workerv1.Reason_REASON_INVALID_ARGUMENT), ErrInvalidArgument},
		{failed(codes.FailedPrecondition, workerv1.Reason_REASON_WRONG_CALL_KIND), ErrWrongCallKind},
		{failed(codes.Unauthenticated, workerv1.Reason_REASON_UNAUTHENTICATED), ErrUnauthenticated},
		{failed(codes.ResourceExhausted, workerv1.Reason_REASON_MESSAGE_TOO_LARGE), ErrMessageTooLarge},
		{failed(codes.Internal, workerv1.Reason_REASON_INTERNAL), ErrUnavailable},
		{failed(codes.Unavailable, workerv1.Reason_REASON_UNAVAILABLE), ErrUnavailable},
		{&workerv1.WorkerFrame{Body: &workerv1.WorkerFrame_Pong{}}, ErrUnavailable}, // an unexpected frame
	} {
		_, err := c.answer("execute", "t", tc.frame, false)
		var ce *CallError
		if !errors.Is(err, tc.want) || !errors.As(err, &ce) {
			t.Errorf("%v: got %v, want %v in a *CallError", tc.frame, err, tc.want)
		}
	}
}
