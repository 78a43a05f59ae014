package reference

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// StreamChunk is the size of the messages a Stream sends: 1 MiB, as a cluster node's
// Parts.
const StreamChunk = 1 << 20

const (
	streamService  = "pyvisor.bench.Bytes"
	streamUpload   = "/" + streamService + "/Upload"
	streamDownload = "/" + streamService + "/Download"
	// streamMaxMessage is the largest message either end accepts: a chunk and its
	// framing, with room to spare.
	streamMaxMessage = 4 * StreamChunk
)

// Stream is a bare gRPC server on a loopback TCP port of its own in this process, and a
// client connection to it: the ceiling of moving bytes between two gRPC endpoints of one
// process, which the nodes of a cluster in one process are compared with. Nothing of
// pyvisor's is in between: a service defined by hand (no generated code) with two
// streaming methods over the standard protobuf codec, bytes in
// google.protobuf.BytesValue messages of StreamChunk bytes, grpc-go's default settings
// but for the maximum message size. Upload and Download may be called concurrently.
type Stream struct {
	lis  net.Listener
	srv  *grpc.Server
	conn *grpc.ClientConn
	// chunk is what the server sends, StreamChunk bytes of a pattern.
	chunk  []byte
	served chan struct{} // closed when Serve returns

	closeOnce sync.Once
	closeErr  error
}

// streamDesc is the service, by hand: Upload is client-streaming (BytesValue chunks
// in, the count of their bytes back as a UInt64Value), Download server-streaming (a
// UInt64Value count in, that many bytes back in BytesValue chunks).
var streamDesc = grpc.ServiceDesc{
	ServiceName: streamService,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Upload", ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			var n uint64
			for {
				m := new(wrapperspb.BytesValue)
				err := ss.RecvMsg(m)
				if errors.Is(err, io.EOF) {
					return ss.SendMsg(wrapperspb.UInt64(n))
				}
				if err != nil {
					return err
				}
				n += uint64(len(m.GetValue()))
			}
		}},
		{StreamName: "Download", ServerStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			s := srv.(*Stream)
			req := new(wrapperspb.UInt64Value)
			if err := ss.RecvMsg(req); err != nil {
				return err
			}
			for left := req.GetValue(); left > 0; {
				n := min(left, uint64(len(s.chunk)))
				if err := ss.SendMsg(wrapperspb.Bytes(s.chunk[:n])); err != nil {
					return err
				}
				left -= n
			}
			return nil
		}},
	},
}

// StartStream listens on a free loopback port, serves the service there and dials it.
// Close stops both.
func StartStream() (_ *Stream, err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &Stream{lis: lis, chunk: make([]byte, StreamChunk), served: make(chan struct{})}
	for i := range s.chunk {
		s.chunk[i] = byte(i % 251)
	}
	s.srv = grpc.NewServer(grpc.MaxRecvMsgSize(streamMaxMessage), grpc.MaxSendMsgSize(streamMaxMessage))
	s.srv.RegisterService(&streamDesc, s)
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(lis)
	}()
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	s.conn, err = grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(streamMaxMessage), grpc.MaxCallSendMsgSize(streamMaxMessage)))
	if err != nil {
		return nil, fmt.Errorf("dial the stream server: %w", err)
	}
	return s, nil
}

// Addr is the server's address.
func (s *Stream) Addr() string { return s.lis.Addr().String() }

// Upload sends data to the server on a stream of its own, in StreamChunk messages, and
// checks the count the server answers with.
func (s *Stream) Upload(ctx context.Context, data []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := s.conn.NewStream(ctx, &streamDesc.Streams[0], streamUpload)
	if err != nil {
		return fmt.Errorf("open an upload: %w", err)
	}
	for b := data; len(b) > 0; {
		n := min(len(b), StreamChunk)
		if err := st.SendMsg(wrapperspb.Bytes(b[:n])); err != nil {
			if errors.Is(err, io.EOF) { // the server ended the stream: its status says why
				err = st.RecvMsg(new(wrapperspb.UInt64Value))
			}
			return fmt.Errorf("upload: %w", err)
		}
		b = b[n:]
	}
	if err := st.CloseSend(); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	got := new(wrapperspb.UInt64Value)
	if err := st.RecvMsg(got); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if got.GetValue() != uint64(len(data)) {
		return fmt.Errorf("upload of %d bytes: the server counted %d", len(data), got.GetValue())
	}
	return nil
}

// Download asks the server for n bytes on a stream of its own and receives them, in
// StreamChunk messages, counting them (each message is unmarshalled into a slice of
// its own, as the protobuf codec does; the bytes are not assembled).
func (s *Stream) Download(ctx context.Context, n int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := s.conn.NewStream(ctx, &streamDesc.Streams[1], streamDownload)
	if err != nil {
		return fmt.Errorf("open a download: %w", err)
	}
	if err := st.SendMsg(wrapperspb.UInt64(uint64(n))); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if err := st.CloseSend(); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	var got int
	for {
		m := new(wrapperspb.BytesValue)
		err := st.RecvMsg(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("download: %w", err)
		}
		got += len(m.GetValue())
	}
	if got != n {
		return fmt.Errorf("download of %d bytes: received %d", n, got)
	}
	return nil
}

// Close closes the connection and stops the server.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		if s.conn != nil {
			s.closeErr = s.conn.Close()
		}
		s.srv.Stop()
		<-s.served
	})
	return s.closeErr
}
