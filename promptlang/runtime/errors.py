"""The runtime's one error: a problem found while running, tied to the spec setting that caused it."""

from __future__ import annotations


class RunError(Exception):
    """A problem found while running; `path` is the spec setting to point at, `hint` how to fix it."""

    def __init__(self, message: str, path: tuple = (), hint: str | None = None):
        super().__init__(message)
        self.path, self.hint = path, hint
