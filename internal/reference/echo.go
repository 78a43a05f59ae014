package reference

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// echoServer is a grpc.aio echo server with nothing of pyvisor's but its Result message:
// the ceiling of a Python gRPC call on this machine. See its docstring.
//
//go:embed echo_server.py
var echoServer []byte

const (
	// EchoStartTimeout bounds StartEcho's wait for the server's ECHO line.
	EchoStartTimeout = 30 * time.Second

	echoUnary  = "/pyvisor.bench.Echo/Unary"
	echoStream = "/pyvisor.bench.Echo/Stream"
)

// EchoServer is a running Python echo server (echo_server.py) and a connection to it.
type EchoServer struct {
	*server
	conn *grpc.ClientConn

	closeOnce sync.Once
	closeErr  error
}

// StartEcho writes echo_server.py to a temporary directory, runs it with python in a
// process group of its own, waits for it to serve (at most EchoStartTimeout) and dials
// it. Close stops it; on every error path StartEcho leaves no process, socket or
// directory behind.
func StartEcho(ctx context.Context, python string) (_ *EchoServer, err error) {
	srv, err := startServer(ctx, python, "echo server", "echo_server.py", echoServer, "ECHO", EchoStartTimeout)
	if err != nil {
		return nil, err
	}
	s := &EchoServer{server: srv}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	sock := srv.sock
	s.conn, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial the echo server: %w", err)
	}
	checkCtx, cancel := context.WithTimeout(ctx, EchoStartTimeout)
	defer cancel()
	if err := s.Unary(checkCtx); err != nil {
		return nil, fmt.Errorf("first call to the echo server: %w", err)
	}
	return s, nil
}

// Unary makes one unary echo call with EchoArgs as the Result's json, and checks the
// answer.
func (s *EchoServer) Unary(ctx context.Context) error {
	resp := new(workerv1.Result)
	if err := s.conn.Invoke(ctx, echoUnary, &workerv1.Result{Json: EchoArgs}, resp); err != nil {
		return err
	}
	return checkEcho(resp)
}

// OpenStream opens one long-lived bidirectional echo stream. ctx bounds the stream's
// whole life, not one call; EchoStream.Close ends it.
func (s *EchoServer) OpenStream(ctx context.Context) (*EchoStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := s.conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}, echoStream)
	if err != nil {
		cancel()
		return nil, err
	}
	return &EchoStream{stream: st, cancel: cancel}, nil
}

// Close stops the server: SIGTERM to its process group, SIGKILL after 2 s, then reaps
// it and removes its directory (script and socket). It returns an error if SIGKILL was
// needed or the server exited with an error. Close is idempotent.
func (s *EchoServer) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.conn != nil {
			errs = append(errs, s.conn.Close())
		}
		errs = append(errs, s.stop())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// EchoStream is one long-lived bidirectional echo stream. Its calls are serialized: a
// mutex lets concurrent callers share it, one request and its response at a time.
type EchoStream struct {
	mu     sync.Mutex
	stream grpc.ClientStream
	cancel context.CancelFunc
	err    error // the first failure; the stream is unusable after it
}

// Call sends one request with EchoArgs and receives its echo. ctx is only checked
// before the call: the stream's own context (OpenStream's) bounds a call in progress.
func (e *EchoStream) Call(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return e.err
	}
	if err := e.stream.SendMsg(&workerv1.Result{Json: EchoArgs}); err != nil {
		e.err = fmt.Errorf("echo stream send: %w", err)
		return e.err
	}
	resp := new(workerv1.Result)
	if err := e.stream.RecvMsg(resp); err != nil {
		e.err = fmt.Errorf("echo stream receive: %w", err)
		return e.err
	}
	return checkEcho(resp)
}

// Close half-closes the stream and cancels it.
func (e *EchoStream) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.stream.CloseSend()
	e.cancel()
	if e.err == nil {
		e.err = errors.New("echo stream closed")
	}
}

func checkEcho(resp *workerv1.Result) error {
	if !bytes.Equal(resp.GetJson(), EchoArgs) {
		return fmt.Errorf("echo returned %q, want %q", resp.GetJson(), EchoArgs)
	}
	return nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
