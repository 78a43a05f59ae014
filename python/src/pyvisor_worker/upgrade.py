"""Session state across an upgrade (docs/upgrades.md): the old worker exports a session's
state, the new one imports it, through the tools' ``@on_upgrade`` hook when they have one
(OTP's ``code_change``)."""

from __future__ import annotations

import inspect
import pickle
import sys
from collections.abc import Callable, Iterable
from typing import Any

from pyvisor_worker.tools import Tool

#: The mark @on_upgrade leaves on its function.
HOOK_ATTR = "__pyvisor_on_upgrade__"

Hook = Callable[[dict[str, Any], str], dict[str, Any]]


def on_upgrade(fn: Hook) -> Hook:
    """Mark ``fn(state, old_version) -> state`` as the tools' upgrade hook: when a Reload
    moves a session to a worker of new code, the session's state (as the old code left it,
    unpickled here) goes through it before the session's next call. Without a hook the state
    moves as it is."""
    setattr(fn, HOOK_ATTR, True)
    return fn


def find_hook(tools: Iterable[Tool]) -> Hook | None:
    """Return the @on_upgrade function of the tools' modules, if one has it."""
    seen: set[str] = set()
    for t in tools:
        name = getattr(inspect.unwrap(t.func), "__module__", None) or ""
        if name in seen:
            continue
        seen.add(name)
        module = sys.modules.get(name)
        for obj in list(vars(module).values()) if module else []:
            if callable(obj) and getattr(obj, HOOK_ATTR, False):
                return obj  # type: ignore[no-any-return]
    return None


def export_state(state: dict[str, Any]) -> bytes:
    """Pickle a session's state for the worker that takes the session over."""
    return pickle.dumps(state, protocol=5)


def import_state(data: bytes, old_version: str, hook: Hook | None) -> tuple[dict[str, Any], bool]:
    """Unpickle a session's state and pass it through ``hook``; say whether it did."""
    state: dict[str, Any] = pickle.loads(data) if data else {}
    if hook is None:
        return state, False
    migrated = hook(state, old_version)
    if not isinstance(migrated, dict):
        raise TypeError(f"@on_upgrade hook {hook.__qualname__} returned {type(migrated).__name__}, not a dict")
    return migrated, True
