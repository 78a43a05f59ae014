"""The worker as a process: handshake, stdio discipline, permissions, exit codes, signals."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import SRC_DIR, TESTS_DIR, args, worker_env

from pyvisor_worker._proto import worker_pb2 as pb


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    return proc.wait(timeout)


async def test_handshake_is_the_only_stdout_output(
    cli_worker: Any, cli_stub: Any, short_dir: Path
) -> None:
    sock = short_dir / "priv" / "w.sock"
    w = cli_worker("--tools", "pyvisor_worker.examples", "--socket", str(sock),
                   "--worker-id", "cli-1")
    assert w.handshake == f"PYVISOR|1|unix|{sock}\n"
    # the worker created a private directory and a private socket
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    stub = cli_stub(str(sock))
    r = await stub.Execute(pb.ExecuteRequest(tool="print_stdout", arguments=args(text="printed!")))
    assert r.result.json == b"true"
    await stub.Execute(pb.ExecuteRequest(tool="log", arguments=args(message="logged!")))
    w.proc.send_signal(signal.SIGTERM)
    assert wait_exit(w.proc) == 0
    assert w.proc.stdout.read() == b""  # nothing after the handshake line
    err = w.stderr()
    assert "printed!" in err
    logged = next(x for x in json_lines(err) if x["message"] == "logged!")
    assert logged["worker_id"] == "cli-1" and logged["level"] == "info"
    assert set(logged) >= {"time", "level", "logger", "message", "worker_id", "correlation_id",
                           "trace_id", "span_id"}
    assert logged["time"].endswith("Z") and len(logged["time"]) == len("2026-11-25T06:40:00.123Z")
    assert not sock.exists() and sock.parent.exists()  # no --remove-socket-dir


def test_bad_tools_module_exits_3_with_a_json_error_after_its_handshake(
    cli_worker: Any, short_dir: Path,
) -> None:
    w = cli_worker("--tools", "broken_tools", "--socket", str(short_dir / "w.sock"),
                   handshake=False)
    assert wait_exit(w.proc) == 3
    assert w.proc.stdout.read().startswith(b"PYVISOR|"), "the load phase comes after the handshake"
    errors = [x for x in json_lines(w.stderr()) if x["level"] == "error"]
    assert errors[0]["message"].startswith("cannot import tools module 'broken_tools'")
    assert "broken on purpose" in errors[0]["exception"]


def test_usage_errors_exit_2(cli_worker: Any, short_dir: Path) -> None:
    w = cli_worker("--tools", "sample_tools", "--tcp", handshake=False)  # no token in the env
    assert wait_exit(w.proc) == 2
    assert "PYVISOR_WORKER_TOKEN" in w.stderr()
    w = cli_worker("--socket", str(short_dir / "w.sock"), handshake=False)  # no --tools
    assert wait_exit(w.proc) == 2


def test_cannot_bind_exits_4(cli_worker: Any, short_dir: Path) -> None:
    blocker = short_dir / "file"
    blocker.write_text("not a directory")
    w = cli_worker("--tools", "sample_tools", "--socket", str(blocker / "w.sock"),
                   handshake=False)
    assert wait_exit(w.proc) == 4
    assert w.proc.stdout.read() == b""


async def test_tcp_handshake_and_token(cli_worker: Any) -> None:
    import grpc

    from pyvisor_worker._proto import worker_pb2_grpc as pb_grpc

    w = cli_worker("--tools", "sample_tools", "--tcp",
                   env=worker_env(PYVISOR_WORKER_TOKEN="tok-123"))
    _, version, kind, address = w.handshake.strip().split("|")
    assert (version, kind) == ("1", "tcp") and address.startswith("127.0.0.1:")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        r = await stub.Execute(pb.ExecuteRequest(tool="hello", arguments=args(name="go")),
                               metadata=(("authorization", "Bearer tok-123"),))
        assert r.result.json == b'"hello go"'
    w.proc.send_signal(signal.SIGINT)
    assert wait_exit(w.proc) == 0
    assert "tok-123" not in w.stderr()


async def test_sigterm_drains_in_flight_call_then_exits(
    cli_worker: Any, cli_stub: Any, short_dir: Path
) -> None:
    sock = short_dir / "d" / "w.sock"
    w = cli_worker("--tools", "pyvisor_worker.examples", "--socket", str(sock),
                   "--remove-socket-dir")
    stub = cli_stub(str(sock))
    call = stub.Execute(pb.ExecuteRequest(tool="sleep", arguments=args(seconds=0.5)))
    while (await stub.Heartbeat(pb.HeartbeatRequest())).in_flight < 1:
        pass
    w.proc.send_signal(signal.SIGTERM)
    r = await call
    assert r.result.json == b"0.5"
    assert wait_exit(w.proc) == 0
    assert not sock.exists() and not sock.parent.exists()


async def test_shutdown_rpc_drains_then_exits(cli_worker: Any, cli_stub: Any, short_dir: Path) -> None:
    sock = short_dir / "w.sock"
    w = cli_worker("--tools", "pyvisor_worker.examples", "--socket", str(sock))
    stub = cli_stub(str(sock))
    call = stub.Execute(pb.ExecuteRequest(tool="sleep", arguments=args(seconds=0.5)))
    while (await stub.Heartbeat(pb.HeartbeatRequest())).in_flight < 1:
        pass
    r = await stub.Shutdown(pb.ShutdownRequest(grace_millis=5000))
    assert r.in_flight == 1
    assert (await call).result.json == b"0.5"
    assert wait_exit(w.proc) == 0
    assert not sock.exists()


async def test_second_signal_exits_at_once(cli_worker: Any, cli_stub: Any, short_dir: Path) -> None:
    sock = short_dir / "w.sock"
    w = cli_worker("--tools", "pyvisor_worker.examples", "--socket", str(sock),
                   "--shutdown-grace", "60")
    stub = cli_stub(str(sock))
    call = stub.Execute(pb.ExecuteRequest(tool="sleep", arguments=args(seconds=60)))
    while (await stub.Heartbeat(pb.HeartbeatRequest())).in_flight < 1:
        pass
    w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while "received SIGTERM" not in w.stderr() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    w.proc.send_signal(signal.SIGTERM)
    assert wait_exit(w.proc, 5) == 128 + signal.SIGTERM
    call.cancel()
    assert not sock.exists()


PARENT = """
import subprocess, sys
worker = subprocess.Popen(
    [sys.executable, "-m", "pyvisor_worker", "--tools", "sample_tools",
     "--socket", sys.argv[1], "--parent-pid", str(__import__("os").getpid())],
    stdout=subprocess.PIPE)
line = worker.stdout.readline()
print(worker.pid, line.decode().strip(), flush=True)
# exit without waiting: the worker is orphaned
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_parent_watchdog_exits_when_the_parent_dies(short_dir: Path) -> None:
    sock = short_dir / "w.sock"
    parent = subprocess.run(
        [sys.executable, "-c", PARENT, str(sock)], env=worker_env(), capture_output=True,
        timeout=30, check=True,
    )
    pid_text, handshake = parent.stdout.decode().split(" ", 1)
    pid = int(pid_text)
    assert handshake.startswith("PYVISOR|1|unix|")
    died = time.monotonic()
    try:
        while _alive(pid) and time.monotonic() - died < 5:
            time.sleep(0.05)
        assert not _alive(pid), "worker outlived its parent"
        assert time.monotonic() - died < 2.5
        assert not sock.exists()
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_crash_mid_call_fails_the_call(cli_worker: Any, cli_stub: Any, short_dir: Path) -> None:
    import grpc

    sock = short_dir / "w.sock"
    w = cli_worker("--tools", "pyvisor_worker.examples", "--socket", str(sock))
    stub = cli_stub(str(sock))
    try:
        await stub.Execute(pb.ExecuteRequest(tool="crash", arguments=args(after_seconds=0.05)),
                           timeout=10)
        raise AssertionError("the call should fail")
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert wait_exit(w.proc) == 70


async def test_hang_and_ignore_sigterm(cli_worker: Any, cli_stub: Any, short_dir: Path) -> None:
    import grpc

    sock = short_dir / "w.sock"
    w = cli_worker("--tools", "pyvisor_worker.examples", "--socket", str(sock))
    stub = cli_stub(str(sock))
    assert (await stub.Execute(pb.ExecuteRequest(tool="ignore_sigterm"))).result.json == b"true"
    hang = stub.Execute(pb.ExecuteRequest(tool="hang", arguments=args(seconds=30)))
    wedged = False
    for _ in range(50):  # once hang runs, the event loop is wedged: heartbeats go unanswered
        try:
            await stub.Heartbeat(pb.HeartbeatRequest(), timeout=0.3)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            wedged = True
            break
    assert wedged
    w.proc.send_signal(signal.SIGTERM)
    try:
        w.proc.wait(0.5)
        raise AssertionError("SIGTERM should be ignored")
    except subprocess.TimeoutExpired:
        pass
    w.proc.send_signal(signal.SIGKILL)
    assert wait_exit(w.proc) == -signal.SIGKILL
    hang.cancel()


def test_a_package_stamped_from_another_source_refuses_to_serve_exit_5(
    cli_worker: Any, short_dir: Path
) -> None:
    stamped = short_dir / "site"
    shutil.copytree(SRC_DIR / "pyvisor_worker", stamped / "pyvisor_worker",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (stamped / "pyvisor_worker" / "source_digest").write_text("aaaaaaaaaaaaaaaa\n")
    path = os.pathsep.join([str(stamped), str(TESTS_DIR)])
    args = ("--tools", "sample_tools", "--socket", str(short_dir / "w.sock"))
    w = cli_worker(*args, env=worker_env(PYTHONPATH=path, PYVISOR_SOURCE_DIGEST="bbbbbbbbbbbbbbbb"),
                   handshake=False)
    assert wait_exit(w.proc) == 5
    assert w.proc.stdout.read() == b""
    assert "is not the one the Go runtime embeds" in w.stderr()
    ok = cli_worker(*args, env=worker_env(PYTHONPATH=path, PYVISOR_SOURCE_DIGEST="aaaaaaaaaaaaaaaa"))
    assert ok.handshake.startswith("PYVISOR|1|unix|"), "the same digest serves"


def test_tools_load_after_the_handshake_and_say_how_long_they_took(
    cli_worker: Any, short_dir: Path,
) -> None:
    w = cli_worker("--tools", "sample_tools", "--socket", str(short_dir / "w.sock"))
    w.proc.terminate()
    wait_exit(w.proc)
    messages = [x["message"] for x in json_lines(w.stderr())]
    serving = messages.index("worker serving")
    loading = next(i for i, m in enumerate(messages) if m.startswith("loading tools modules sample_tools"))
    loaded = next(i for i, m in enumerate(messages) if m.startswith("tools loaded in "))
    assert serving < loading < loaded


def test_a_host_waiting_in_describe_never_sees_a_failed_load_as_ready(
    cli_worker: Any, short_dir: Path,
) -> None:
    import grpc

    from pyvisor_worker._proto import worker_pb2 as pb
    from pyvisor_worker._proto import worker_pb2_grpc as pb_grpc

    sock = short_dir / "w.sock"
    w = cli_worker("--tools", "slow_broken_tools", "--socket", str(sock), handshake=False)
    line = w.proc.stdout.readline()
    assert line.startswith(b"PYVISOR|")
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        try:
            stub.Describe(pb.DescribeRequest(), timeout=10)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), (
        f"Describe ended with {code}, not as a worker that is exiting")
    assert wait_exit(w.proc) == 3
