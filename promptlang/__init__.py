"""promptlang: a declarative language for prompt-based few-shot learning.

The front end's stages are public and callable on their own:
`parse` (text → syntax nodes), `build` (nodes → `Spec`), `check` (semantic checks),
and `analyze` runs all three. None of them imports torch or transformers.
"""

from promptlang.api import Analysis, analyze, load_spec
from promptlang.language.builder import build
from promptlang.language.checks import check
from promptlang.language.diagnostics import Diagnostic, Diagnostics, SpecError
from promptlang.language.parser import parse
from promptlang.language.source import Source, Span
from promptlang.language.spec import Spec
from promptlang.version import __version__


def load(path, device: str | None = None, precision: str | None = None):
    """A trained classifier from a `promptlang run` output directory; `.predict(["text", ...])`.

    `device`: auto (a GPU when there is one), cpu, cuda, cuda:N or mps; `precision`: fp32 (default),
    bf16 or fp16. Needs the `train` extra (imports torch and transformers).
    """
    from promptlang.output.predictor import load as load_predictor

    return load_predictor(path, device, precision)


__all__ = [
    "Analysis", "Diagnostic", "Diagnostics", "Source", "Span", "Spec", "SpecError",
    "analyze", "build", "check", "load", "load_spec", "parse", "__version__",
]
