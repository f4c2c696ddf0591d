"""Exit codes, the usage error, the full-disk message and the input-file reader shared by the `promptlang` command and the commands
in this package."""

import errno
from pathlib import Path

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
DISK_FULL = ("no space left on the device while writing; free some space (finished stages are kept in the stage "
             "store, `--stages DIR` or $PROMPTLANG_CACHE/stages, and reused) and run the same command again")


class UsageError(Exception):
    """A mistake in how the command was called (exit 2)."""


def disk_full(error: BaseException) -> bool:
    """Whether `error` is the disk filling up (an OSError, or a library's error that wraps one, like safetensors')."""
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left on device" in str(error)


def input_rows(source: Path, fmt: str) -> list[dict]:
    """The rows of an `--input` file (`predict`, `explain`), or a usage error saying why they cannot be read."""
    from promptlang.language.datafiles import DataFileError, read_rows

    try:
        return read_rows(source, fmt, str(source))
    except DataFileError as error:
        raise UsageError(str(error) + (f"; {error.hint}" if error.hint else "")) from None


def quiet_transformers() -> None:
    """No third-party bars or warnings from transformers (for commands that print results)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
