"""Which source this installed worker package was built from: the digest that the Go
module's ``pyvisor setup`` stamps into the package (the file ``source_digest``), or "" for a
package installed another way (an editable install from a checkout)."""

from __future__ import annotations

from importlib import resources

DIGEST_ENV = "PYVISOR_SOURCE_DIGEST"
"""The digest of the worker package embedded in the Go runtime that starts this worker."""


def digest() -> str:
    """The stamped source digest, or "" when the package was not installed by pyvisor setup."""
    stamp = resources.files("pyvisor_worker").joinpath("source_digest")
    try:
        return stamp.read_text(encoding="ascii").strip()
    except (FileNotFoundError, OSError):
        return ""
