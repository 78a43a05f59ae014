"""A tools module that fails at import, as a typo would."""

import no_such_dependency_xyz  # noqa: F401
