"""The error table: malformed specs and the exact diagnostics each one gets.

The cases live in `tests/errors/cases.txt`, one per `=== name` section:

    === case-name
    promptlang 1                  <- the spec, written to tmp_path/spec.prompt
    labels a b
    --- file lib.prompt           <- optional: another file next to the spec
    template t "x [MASK]"
    --- expect                    <- every error and warning, in `Diagnostics.sorted()` order
    2:10-11 error: unexpected `b` after a complete setting
        help: separate the values of a list with `,`, ...

A diagnostic line is `LINE:COL-ENDCOL severity: message` (`LINE:COL-ENDLINE:ENDCOL`
when the span covers several lines), prefixed with `FILE:` when it is not in
spec.prompt; the path of the temporary folder is shown as `<tmp>`. Lines of the table
that start with `#` before the first case are comments.

Every case's folder also holds a small data set (`train.tsv`, `dev.tsv`, `test.tsv`,
`unlabeled.tsv`, columns `label` and `sentence`) so that data-file checks can pass or
fail on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import promptlang
import promptlang.fmt
from promptlang.cli import main
from promptlang.diagnostics import Severity

CASES_FILE = Path(__file__).parent / "errors" / "cases.txt"
SPEC = "spec.prompt"
DATA = {
    "train.tsv": "label\tsentence\npositive\ta gorgeous film\nnegative\ta dull mess\n",
    "dev.tsv": "label\tsentence\npositive\tfunny and warm\nnegative\ttoo long\n",
    "test.tsv": "label\tsentence\npositive\tgreat fun\nnegative\tboring\n",
    "unlabeled.tsv": "label\tsentence\n\tsome review\n\tanother review\n",
}
# Lark's internal names must never reach a user.
LARK_NAMES = re.compile(r"\b(?:[A-Z]+_[A-Z_]*|LBRACE|RBRACE|LPAR|RPAR|LSQB|RSQB|COMMA|COLON|EQUAL|VBAR|"
                        r"STRING|NUMBER|NAME|TEXT|MASK_SLOT|\$END)\b|__ANON|_NL\b|Token\(|Tree\(")


@dataclass
class Case:
    name: str
    line: int
    spec: str
    files: dict[str, str] = field(default_factory=dict)
    expect: list[str] = field(default_factory=list)


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def load_cases(path: Path = CASES_FILE) -> list[Case]:
    """Read the table."""
    cases: list[Case] = []
    section: list[str] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("=== "):
            cases.append(Case(line[4:].strip(), number, ""))
            section = []
            cases[-1].files[SPEC] = section  # type: ignore[assignment]
        elif not cases:
            assert not line.strip() or line.startswith("#"), f"cases.txt:{number}: text before the first case"
        elif line.startswith("--- file "):
            section = []
            cases[-1].files[line[9:].strip()] = section  # type: ignore[assignment]
        elif line == "--- expect":
            section = cases[-1].expect
        else:
            section.append(line)  # type: ignore[union-attr]
    for case in cases:
        case.files = {name: _text(lines) for name, lines in case.files.items()}  # type: ignore[arg-type]
        case.spec = case.files.pop(SPEC)
        while case.expect and not case.expect[-1].strip():
            case.expect.pop()
    return cases


CASES = load_cases()


def write_case(case: Case, folder: Path) -> Path:
    for name, text in DATA.items():
        (folder / name).write_text(text, encoding="utf-8")
    for name, text in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    spec = folder / SPEC
    spec.write_text(case.spec, encoding="utf-8")
    return spec


def render(diagnostics, folder: Path) -> list[str]:
    """The diagnostics (errors and warnings) in the table's notation."""
    out = []
    for d in diagnostics.sorted():
        if d.severity is Severity.NOTE:
            continue
        s = d.span
        file = Path(s.file)
        where = "" if file == folder / SPEC else f"{file.relative_to(folder) if file.is_relative_to(folder) else file}:"
        end = f"{s.end_col}" if s.end_line == s.line else f"{s.end_line}:{s.end_col}"
        out.append(f"{where}{s.line}:{s.col}-{end} {d.severity.value}: {d.message}")
        if d.hint:
            out.append(f"    help: {d.hint}")
    return [line.replace(str(folder), "<tmp>") for line in out]


def run_case(case: Case, folder: Path) -> list[str]:
    return render(promptlang.analyze(write_case(case, folder)).diagnostics, folder)


def test_table_is_well_formed():
    names = [c.name for c in CASES]
    assert len(names) >= 60
    assert len(set(names)) == len(names), "case names must be unique"
    for case in CASES:
        assert case.expect, f"{case.name}: a malformed spec must get at least one diagnostic"
        assert any(" error: " in line for line in case.expect) or "warning" in case.name, case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error(case: Case, tmp_path: Path):
    assert run_case(case, tmp_path) == case.expect


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_formatter_never_crashes(case: Case, tmp_path: Path):
    formatted, diagnostics = promptlang.fmt.format_source(promptlang.Source(case.spec, str(tmp_path / SPEC)))
    assert (formatted is None) == bool(diagnostics.errors)


def test_messages_never_show_grammar_names():
    for case in CASES:
        for line in case.expect:
            assert not LARK_NAMES.search(line), f"{case.name}: {line}"


def test_cli_exits_1_on_a_bad_spec(tmp_path: Path, capsys):
    case = next(c for c in CASES if c.name == "missing-comma-in-labels")
    spec = write_case(case, tmp_path)
    assert main(["check", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "error: unexpected `positive` after a complete setting" in out
    assert f"--> {spec}:3:17" in out


@pytest.mark.parametrize("output", ["text", "json", "github"])
def test_cli_never_crashes_on_the_table(tmp_path: Path, capsys, output: str):
    for i, case in enumerate(CASES):
        (tmp_path / f"case{i:03}").mkdir()
        write_case(case, tmp_path / f"case{i:03}")
    assert main(["check", "--format", output, str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "internal error" not in captured.err
