"""The version of a worker's tool code (docs/upgrades.md)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker.tools import discover
from pyvisor_worker.version import VERSION_ENV, code_version


def load(folder: Path, name: str) -> str:
    """Import module name from folder, as a worker does, and return its code version."""
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop(name, None)
        return code_version(discover([importlib.import_module(name)]).values())
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)


def write(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(f"from pyvisor_worker import tool\n\n@tool\ndef f() -> int:\n    return {body}\n")


def test_the_version_follows_the_code_not_where_it_lies(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write(a, "vtools", "1")
    write(b, "vtools", "1")
    first, elsewhere = load(a, "vtools"), load(b, "vtools")
    write(a, "vtools", "2")
    changed = load(a, "vtools")
    assert first == elsewhere and first != changed and len(first) == 12


def test_a_package_is_versioned_with_its_helpers(tmp_path: Path) -> None:
    pkg = tmp_path / "vpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("K = 1\n")
    (pkg / "tools.py").write_text("from pyvisor_worker import tool\nfrom vpkg.helpers import K\n\n"
                                  "@tool\ndef f() -> int:\n    return K\n")

    def version() -> str:
        for m in [m for m in sys.modules if m == "vpkg" or m.startswith("vpkg.")]:
            sys.modules.pop(m)
        return load(tmp_path, "vpkg.tools")

    before = version()
    (pkg / "helpers.py").write_text("K = 2\n")
    assert version() != before


def test_the_hosts_label_names_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "ltools", "1")
    monkeypatch.setenv(VERSION_ENV, "release-42")
    assert load(tmp_path, "ltools") == "release-42"


async def test_describe_names_the_code_version(start_worker: Any) -> None:
    w = await start_worker()
    d = await w.stub.Describe(pb.DescribeRequest())
    assert len(d.code_version) == 12
