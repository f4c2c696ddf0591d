"""Exit codes and the usage error shared by the `promptlang` command and the commands in this package."""

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(Exception):
    """A mistake in how the command was called (exit 2)."""
