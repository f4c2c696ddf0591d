"""Exit codes, the usage error and the full-disk message shared by the `promptlang` command and the commands
in this package."""

import errno

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
DISK_FULL = ("no space left on the device while writing; free some space (finished stages are kept in the stage "
             "store, `--stages DIR` or $PROMPTLANG_CACHE/stages, and reused) and run the same command again")


class UsageError(Exception):
    """A mistake in how the command was called (exit 2)."""


def disk_full(error: BaseException) -> bool:
    """Whether `error` is the disk filling up (an OSError, or a library's error that wraps one, like safetensors')."""
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left on device" in str(error)
