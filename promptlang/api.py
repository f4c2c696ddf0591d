"""The front end in one call: read → parse → build → check (no torch, no transformers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from promptlang.language import syntax
from promptlang.language.builder import Locations, build
from promptlang.language.checks import check
from promptlang.language.diagnostics import Diagnostics, SpecError
from promptlang.language.overrides import read_overrides
from promptlang.language.parser import parse
from promptlang.language.reader import read_source
from promptlang.language.source import Source
from promptlang.language.mixture_checks import check_mixture
from promptlang.language.spec import Library, Mixture, Spec
from promptlang.language.support import not_yet


@dataclass
class Analysis:
    """Everything the front end learned about one spec file."""

    source: Source
    nodes: syntax.File | None
    spec: Spec | Library | Mixture | None
    locations: Locations | None
    diagnostics: Diagnostics

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.diagnostics.errors


def analyze(source: Source | str | Path, *, tokenizer: bool = False, overrides: list[str] = ()) -> Analysis:
    """Parse, build and check one spec; every problem found is in `diagnostics`.

    Args:
        source: a `Source`, or the path of a spec file.
        tokenizer: also load the model's tokenizer and run the tokenizer-aware checks
            (needs the `train` extra; imports transformers).
        overrides: `--set KEY=VALUE` settings, applied before validation: every check sees
            them, and a problem with one is located on the command line (`--> --set:1:14`).

    Returns:
        An `Analysis`; `spec` is None when the spec has errors.

    Raises:
        OverrideError: an override is not KEY=VALUE.
    """
    settings = read_overrides(list(overrides)) if overrides else None
    if not isinstance(source, Source):
        source, problems = read_source(source)
        if source is None:
            return Analysis(next(iter(problems.sources.values())), None, None, None, problems)
    nodes, diagnostics = parse(source)
    if nodes is None:
        return Analysis(source, None, None, None, diagnostics)
    if settings is not None and settings.diagnostics.errors:  # as a spec that does not parse: nothing is built
        diagnostics.extend(settings.diagnostics)
        return Analysis(source, nodes, None, None, diagnostics)
    built = build(nodes, source, settings)
    diagnostics.extend(built.diagnostics)
    if built.spec is None:
        return Analysis(source, nodes, None, built.locations, diagnostics)
    if isinstance(built.spec, Library):
        return Analysis(source, nodes, None if diagnostics.errors else built.spec, built.locations, diagnostics)
    if isinstance(built.spec, Mixture):
        found, _ = check_mixture(built, analyze)
        for item in not_yet(built.spec):
            found.warning(item.message, built.locations.key(item.path),
                          f"`promptlang run` refuses it until it is built; {item.hint}")
        diagnostics.extend(found)
        return Analysis(source, nodes, None if diagnostics.errors else built.spec, built.locations, diagnostics)
    diagnostics.extend(check(built))
    if tokenizer and not diagnostics.errors:
        from promptlang.compiler.tokenizer_checks import check_tokenization

        diagnostics.extend(check_tokenization(built))
    spec = None if diagnostics.errors else built.spec
    return Analysis(source, nodes, spec, built.locations, diagnostics)


def load_spec(path: str | Path) -> Spec:
    """The validated spec of a file.

    Raises:
        SpecError: the spec has errors; `.diagnostics` holds all of them.
    """
    analysis = analyze(Path(path))
    if not analysis.ok:
        raise SpecError(analysis.diagnostics)
    if isinstance(analysis.spec, Library):
        raise SpecError(_library_error(analysis))
    return analysis.spec


def _library_error(analysis: Analysis) -> Diagnostics:
    diagnostics = Diagnostics(sources={analysis.source.path: analysis.source})
    diagnostics.error("this file only defines templates and verbalizers: it is a library to import, not a spec",
                      analysis.locations.get(()), "import it from a spec with `import \"file.prompt\"`")
    return diagnostics
