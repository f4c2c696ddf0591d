"""'Did you mean' hints and short listings of names, for every message that names choices."""

from __future__ import annotations

import difflib
import itertools
from pathlib import Path

SUGGEST_LIMIT = 1000  # choices compared by `suggest`; more would make one typo cost seconds


def suggest(word: str, choices) -> str | None:
    """'did you mean `x`?' for the closest choice, or None.

    Only the first `SUGGEST_LIMIT` choices are compared, so one call costs at most that much
    however long the list of choices is.
    """
    word = str(word)
    # difflib's ratio is at most 2·min(a, b) / (a + b): lengths outside this window cannot reach 0.6
    near = [c for c in map(str, itertools.islice(choices, SUGGEST_LIMIT))
            if 10 * min(len(c), len(word)) >= 3 * (len(c) + len(word))]
    close = difflib.get_close_matches(word, near, n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def listing(names, limit: int = 10) -> str:
    """Names for a hint, `a`, `b`, ...: the first `limit`, then how many there are in all."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


def suggest_file(name: str, names) -> str | None:
    """'did you mean `x`?' for file names: the stems are compared, not the shared extension."""
    suffix = Path(name).suffix
    stems = {Path(n).stem: n for n in names if Path(n).suffix == suffix}
    close = difflib.get_close_matches(Path(name).stem, list(stems), n=1, cutoff=0.6)
    return f"did you mean `{stems[close[0]]}`?" if close else None
