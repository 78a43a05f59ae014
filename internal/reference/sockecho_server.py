"""The floor for moving bytes between Go and Python: a bare Unix-socket echo, nothing else.

Usage: python sockecho_server.py SOCKET_PATH [PARENT_PID] [SOCKET_BUFFER_BYTES]

Listens on the Unix stream socket SOCKET_PATH and serves one connection at a time, each
until EOF. Protocol: a request is an 8-byte little-endian length N followed by N bytes;
the answer is the same 8-byte header followed by the same N bytes. A request is read whole
before its answer is sent (store and forward, as a bridge receives a call's argument
before it returns a result), so a client may write a whole request before it reads.

It is what a competent hand-written bridge does in plain Python: one preallocated
bytearray holding header and payload, grown (never shrunk) when a request needs more,
``recv_into`` on memoryview slices of it and one ``sendall`` of a memoryview slice for the
answer; no copy of the payload in Python and no import beyond the standard library.
SOCKET_BUFFER_BYTES (default 4 MiB; 0 keeps the system's) sets SO_SNDBUF and SO_RCVBUF of
every accepted connection.

Prints one line ``SOCKECHO|<socket path>`` on stdout once listening. Exits with status 0
on SIGTERM or SIGINT, and when its parent (PARENT_PID, by default the parent it started
with) is gone, removing its socket in every case it can.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading

HEADER = 8
# Initial size of the buffer: header plus a 1 MiB payload.
INITIAL = HEADER + (1 << 20)
DEFAULT_SOCKET_BUFFER = 4 << 20


class Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler to unwind to main."""


def remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def watch_parent(parent_pid: int, path: str) -> None:
    """Poll the parent from a daemon thread; once it is gone, remove the socket and exit."""

    def watch() -> None:
        idle = threading.Event()
        while os.getppid() == parent_pid:
            idle.wait(0.2)
        remove(path)
        os._exit(0)

    threading.Thread(target=watch, name="sockecho-parent-watchdog", daemon=True).start()


def on_signal(signum: int, frame: object) -> None:
    raise Stop


def recv_exact(conn: socket.socket, view: memoryview) -> bool:
    """Fill view from conn; False on EOF before the first byte, EOFError on EOF after it."""
    n = len(view)
    got = 0
    while got < n:
        k = conn.recv_into(view[got:])
        if k == 0:
            if got == 0:
                return False
            raise EOFError(f"connection closed after {got} of {n} bytes")
        got += k
    return True


def serve_conn(conn: socket.socket, buf: bytearray) -> bytearray:
    """Echo requests on conn until EOF; returns the (possibly grown) buffer."""
    view = memoryview(buf)
    while True:
        if not recv_exact(conn, view[:HEADER]):
            return buf
        end = HEADER + int.from_bytes(view[:HEADER], "little")
        if end > len(buf):
            header = bytes(view[:HEADER])
            view.release()
            buf = bytearray(max(end, 2 * len(buf)))
            view = memoryview(buf)
            view[:HEADER] = header
        if not recv_exact(conn, view[HEADER:end]) and end > HEADER:
            raise EOFError("connection closed after a request's header")
        conn.sendall(view[:end])


def serve(path: str, sockbuf: int) -> None:
    buf = bytearray(INITIAL)
    remove(path)  # a stale socket file
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        print(f"SOCKECHO|{path}", flush=True)
        while True:
            conn, _ = listener.accept()
            with conn:
                if sockbuf > 0:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sockbuf)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sockbuf)
                try:
                    buf = serve_conn(conn, buf)
                except (EOFError, ConnectionError, MemoryError) as e:
                    print(f"sockecho_server: connection dropped: {e!r}", file=sys.stderr, flush=True)


def main() -> None:
    if len(sys.argv) not in (2, 3, 4):
        raise SystemExit("usage: sockecho_server.py SOCKET_PATH [PARENT_PID] [SOCKET_BUFFER_BYTES]")
    path = sys.argv[1]
    parent_pid = int(sys.argv[2]) if len(sys.argv) >= 3 else os.getppid()
    sockbuf = int(sys.argv[3]) if len(sys.argv) == 4 else DEFAULT_SOCKET_BUFFER
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    watch_parent(parent_pid, path)
    try:
        serve(path, sockbuf)
    except Stop:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        remove(path)


if __name__ == "__main__":
    main()
