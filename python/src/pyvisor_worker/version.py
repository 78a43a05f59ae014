"""The version of a worker's tool code: what an upgrade rolls and what Stats, spans and
logs name (docs/upgrades.md)."""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from pyvisor_worker.tools import Tool

#: A label the host gives the code instead of its hash (Runtime.Reload's WithVersion).
VERSION_ENV = "PYVISOR_CODE_VERSION"


def _files(tools: Iterable[Tool]) -> dict[str, Path]:
    """The source files of the tools' code, by a name that does not depend on where the
    code lies: a tool's own module file, or every .py file of the top-level package it is in
    (helpers its tools import change the version too)."""
    files: dict[str, Path] = {}
    for t in tools:
        name = getattr(inspect.unwrap(t.func), "__module__", None) or ""
        top = sys.modules.get(name.split(".")[0])
        roots = list(getattr(top, "__path__", None) or [])
        if roots:
            for root in roots:
                for path in sorted(Path(root).rglob("*.py")):
                    files[f"{name.split('.')[0]}/{path.relative_to(root).as_posix()}"] = path
            continue
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if file:
            files[Path(file).name] = Path(file)
    return files


def code_version(tools: Iterable[Tool]) -> str:
    """Name the tool code: the host's label when it gave one, else 12 hex digits of a
    SHA-256 over the tools' source files (their names and contents)."""
    label = os.environ.get(VERSION_ENV, "")
    if label:
        return label
    digest = hashlib.sha256()
    for name, path in sorted(_files(tools).items()):
        digest.update(name.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
        digest.update(b"\0")
    return digest.hexdigest()[:12]
