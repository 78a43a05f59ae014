package reference

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// sockEchoServer is a bare Unix-socket echo server in plain Python (no gRPC, nothing of
// pyvisor's): the floor a hand-written Go↔Python bridge gets for moving bytes. See its
// docstring.
//
//go:embed sockecho_server.py
var sockEchoServer []byte

const (
	// SocketEchoStartTimeout bounds StartSocketEcho's wait for the server's SOCKECHO line.
	SocketEchoStartTimeout = 30 * time.Second
	// SocketEchoBuffer is the SO_SNDBUF and SO_RCVBUF both ends of a SocketEcho's
	// connection ask for (the kernel caps it at net.core.wmem_max / rmem_max).
	SocketEchoBuffer = 4 << 20
	// sockEchoHeader is the size of a request's or answer's length prefix.
	sockEchoHeader = 8
)

// SocketEcho is a running Python Unix-socket echo server (sockecho_server.py) and one
// connection to it. Its RoundTrips are serialized: a mutex lets concurrent callers share
// it, one request and its answer at a time.
type SocketEcho struct {
	*server

	mu   sync.Mutex
	conn *net.UnixConn
	hdr  [sockEchoHeader]byte // the request's header
	rhdr [sockEchoHeader]byte // the answer's header
	vec  [2][]byte            // backing array of bufs
	bufs net.Buffers          // the writev's; a field, so that WriteTo does not allocate
	err  error                // the first failure; the connection is unusable after it

	closeOnce sync.Once
	closeErr  error
}

// StartSocketEcho writes sockecho_server.py to a temporary directory (mode 0700), runs
// it with python in a process group of its own, waits for it to listen (at most
// SocketEchoStartTimeout, or until ctx is done) and connects to it, with SO_SNDBUF and
// SO_RCVBUF of SocketEchoBuffer on both ends. ctx bounds only the start. Close stops it;
// on every error path StartSocketEcho leaves no process, socket or directory behind.
func StartSocketEcho(ctx context.Context, python string) (_ *SocketEcho, err error) {
	srv, err := startServer(ctx, python, "socket echo server", "sockecho_server.py", sockEchoServer, "SOCKECHO",
		SocketEchoStartTimeout, strconv.Itoa(SocketEchoBuffer))
	if err != nil {
		return nil, err
	}
	s := &SocketEcho{server: srv}
	defer func() {
		if err != nil {
			_ = s.stop()
		}
	}()
	sock := srv.sock

	d := net.Dialer{Timeout: SocketEchoStartTimeout}
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("dial the socket echo server: %w", err)
	}
	s.conn = c.(*net.UnixConn)
	if SocketEchoBuffer > 0 {
		if err := errors.Join(s.conn.SetWriteBuffer(SocketEchoBuffer), s.conn.SetReadBuffer(SocketEchoBuffer)); err != nil {
			_ = s.conn.Close()
			return nil, fmt.Errorf("socket echo buffers: %w", err)
		}
	}
	return s, nil
}

// RoundTrip sends in as one request (its 8-byte little-endian length and its bytes, in
// one writev) and reads the answer: the echoed header, then exactly len(in) bytes
// straight into out, which must have len(in). It does not check that out equals in. An
// echoed length other than len(in), or any I/O error, leaves the connection out of step:
// that error is returned by every later RoundTrip. Without a deadline of its own, a
// RoundTrip waits as long as the server takes; Close ends one in progress.
func (s *SocketEcho) RoundTrip(in, out []byte) error {
	if len(out) != len(in) {
		return fmt.Errorf("socket echo: out has %d bytes, in %d", len(out), len(in))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	binary.LittleEndian.PutUint64(s.hdr[:], uint64(len(in)))
	s.vec = [2][]byte{s.hdr[:], in}
	s.bufs = s.vec[:]
	_, err := s.bufs.WriteTo(s.conn)
	s.vec, s.bufs = [2][]byte{}, nil // do not keep in alive
	if err != nil {
		s.err = fmt.Errorf("socket echo write: %w", err)
		return s.err
	}
	if _, err := io.ReadFull(s.conn, s.rhdr[:]); err != nil {
		s.err = fmt.Errorf("socket echo read header: %w", err)
		return s.err
	}
	if n := binary.LittleEndian.Uint64(s.rhdr[:]); n != uint64(len(in)) {
		s.err = fmt.Errorf("socket echo answered %d bytes to %d", n, len(in))
		return s.err
	}
	if _, err := io.ReadFull(s.conn, out); err != nil {
		s.err = fmt.Errorf("socket echo read: %w", err)
		return s.err
	}
	return nil
}

// Close closes the connection and stops the server: SIGTERM to its process group,
// SIGKILL after 2 s, then reaps it and removes its directory (script and socket). It
// returns an error if SIGKILL was needed or the server exited with an error. Close is
// idempotent; later RoundTrips fail.
func (s *SocketEcho) Close() error {
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
