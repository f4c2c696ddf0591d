"""Source files and spans: where a piece of a spec came from."""

from __future__ import annotations

import bisect
import errno
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

# A spec's first line that is neither blank nor a comment starts with the word `promptlang`.
_SPEC_HEADER = re.compile(r"(?:[ \t\f]*(?:#[^\n]*)?\r?\n)*[ \t\f]*promptlang(?![\w-])")


@dataclass(frozen=True)
class Span:
    """A half-open region of one source file, 1-based lines and columns.

    `end_col` is the column just after the last character.
    """

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def to_dict(self) -> dict:
        return {"line": self.line, "col": self.col, "end_line": self.end_line, "end_col": self.end_col}


@dataclass
class Source:
    """The text of one spec file, with a line index for offset → (line, col)."""

    text: str
    path: str = "<string>"
    typed: bool = False  # text typed on the command line (`--set`): shown in diagnostics as a spec is

    def __post_init__(self) -> None:
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(self.text) if ch == "\n"]

    @classmethod
    def read(cls, path: str | Path) -> "Source":
        """Read a spec file as UTF-8 (a leading BOM is dropped)."""
        text = Path(path).read_text(encoding="utf-8-sig")
        return cls(text=text, path=str(path))

    @property
    def directory(self) -> Path:
        return Path(self.path).parent if self.path != "<string>" else Path.cwd()

    @cached_property
    def is_spec(self) -> bool:
        """Whether this is a promptlang file: its first line that is not blank or a comment is a
        `promptlang` header (or the command line's `typed` text). Only such files have their lines shown
        in diagnostics."""
        return self.typed or _SPEC_HEADER.match(self.text) is not None

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, col) of a character offset."""
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def offset(self, line: int, col: int) -> int:
        """The character offset of a 1-based (line, col)."""
        return self._line_starts[line - 1] + col - 1

    def find(self, within: Span, needle: str) -> Span | None:
        """The span of the first `needle` inside `within`, or None."""
        start, end = self.offset(within.line, within.col), self.offset(within.end_line, within.end_col)
        at = self.text.find(needle, start, end)
        return self.span(at, at + len(needle)) if at >= 0 else None

    def span(self, start: int, end: int) -> Span:
        """The span of characters [start, end)."""
        line, col = self.position(start)
        end_line, end_col = self.position(max(end, start))
        return Span(self.path, line, col, end_line, end_col)

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its newline."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)].rstrip("\r")


def is_link_loop(path: Path) -> bool:
    """Whether resolving `path` runs into a loop of symbolic links."""
    try:
        path.resolve()
        path.stat()
    except RuntimeError:  # Python 3.11's resolve()
        return True
    except (OSError, ValueError) as error:
        return getattr(error, "errno", None) == errno.ELOOP
    return False

