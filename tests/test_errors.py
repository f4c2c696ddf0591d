"""The error table: malformed specs and the exact diagnostics each one gets.

The cases live in `tests/errors/*.txt` (`cases.txt` first, then the others by name; a
table per area), one per `=== name` section:

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
spec.prompt; the path of the temporary folder is shown as `<tmp>`. Lines that start
with `#` are comments, before the first case and after an `--- expect` section.

A known crash is recorded as `!crash ExceptionName` in place of the diagnostics: the
case is an expected failure (strict) until promptlang reports it properly; then the
test fails with the new output, to be written into the table.

`pytest --regen-goldens` rewrites every case's expectation from the current output
(review the diff before committing it); with `REGEN_TABLE=name.txt` set, only that table.

Every case's folder also holds a small data set (`train.tsv`, `dev.tsv`, `test.tsv`,
`unlabeled.tsv`, columns `label` and `sentence`) so that data-file checks can pass or
fail on purpose.
"""

from __future__ import annotations

import builtins
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import promptlang
import promptlang.language.fmt
from promptlang.cli import main
from promptlang.language.diagnostics import Severity

TABLES = Path(__file__).parent / "errors"
CASES_FILE = TABLES / "cases.txt"
TABLE_FILES = [CASES_FILE, *sorted(p for p in TABLES.glob("*.txt") if p != CASES_FILE)]
SPEC = "spec.prompt"
DATA = {
    "train.tsv": "label\tsentence\npositive\ta gorgeous film\nnegative\ta dull mess\n",
    "dev.tsv": "label\tsentence\npositive\tfunny and warm\nnegative\ttoo long\n",
    "test.tsv": "label\tsentence\npositive\tgreat fun\nnegative\tboring\n",
    "unlabeled.tsv": "label\tsentence\n\tsome review\n\tanother review\n",
}
# Lark's internal names must never reach a user (NAME, STRING... as placeholders in a hint,
# like `template NAME "..."`, are fine; "expected NAME" is not).
LARK_NAMES = re.compile(
    r"\b(?:[A-Z]+_[A-Z_]*|[LR](?:BRACE|PAR|SQB)|COMMA|COLON|EQUAL|VBAR|PROMPTLANG)\b"
    r"|\$END|__ANON|\b_NL\b|Token\(|Tree\(|UnexpectedToken|UnexpectedCharacters"
    r"|`(?:[lr](?:brace|par|sqb)|comma|_nl|\$end|mask_slot|soft_slot|demos_slot|sep_slot|_open_field|_close_field)`"
    r"|(?:expected|found|after) (?:NAME|STRING|NUMBER|TEXT)\b")


@dataclass
class Case:
    name: str
    line: int
    spec: str
    files: dict[str, str] = field(default_factory=dict)
    expect: list[str] = field(default_factory=list)
    table: Path = CASES_FILE


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def load_cases(path: Path = CASES_FILE) -> list[Case]:
    """Read the table."""
    cases: list[Case] = []
    section: list[str] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("=== "):
            cases.append(Case(line[4:].strip(), number, "", table=path))
            section = []
            cases[-1].files[SPEC] = section  # type: ignore[assignment]
        elif not cases:
            assert not line.strip() or line.startswith("#"), f"{path.name}:{number}: text before the first case"
        elif line.startswith("--- file "):
            section = []
            cases[-1].files[line[9:].strip()] = section  # type: ignore[assignment]
        elif line == "--- expect":
            section = cases[-1].expect
        elif section is cases[-1].expect and line.startswith("#"):
            continue  # a comment between cases
        else:
            section.append(line)  # type: ignore[union-attr]
    for case in cases:
        case.files = {name: _text(lines) for name, lines in case.files.items()}  # type: ignore[arg-type]
        case.spec = case.files.pop(SPEC)
        while case.expect and not case.expect[-1].strip():
            case.expect.pop()
    return cases


CASES = [case for table in TABLE_FILES for case in load_cases(table)]
CRASH = "!crash "


def crash_of(case: Case) -> type[BaseException] | None:
    """The exception a known-crash case raises today, or None."""
    if case.expect and case.expect[0].startswith(CRASH):
        return getattr(builtins, case.expect[0][len(CRASH):].strip())
    return None


def params(cases: list[Case]) -> list:
    """The cases as pytest params; a known crash is a strict expected failure."""
    out = []
    for case in cases:
        crash = crash_of(case)
        marks = [pytest.mark.xfail(raises=crash, strict=True, reason=f"known crash: {crash.__name__}")] if crash else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


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


@pytest.mark.parametrize("case", params(CASES))
def test_error(case: Case, tmp_path: Path):
    assert run_case(case, tmp_path) == case.expect, f"tests/errors/{case.table.name}:{case.line}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_formatter_never_crashes(case: Case, tmp_path: Path):
    formatted, diagnostics = promptlang.language.fmt.format_source(promptlang.Source(case.spec, str(tmp_path / SPEC)))
    assert (formatted is None) == bool(diagnostics.errors)


def test_messages_never_show_grammar_names():
    for case in CASES:
        for line in case.expect:
            assert not LARK_NAMES.search(line), f"{case.name}: {line}"


def test_messages_never_show_pydantic_wording():
    leaks = [f"{case.name}: {line}" for case in CASES for line in case.expect
             if re.search(r"Input should|Input tag|Unable to extract tag|discriminator", line)]
    assert not leaks, "\n".join(leaks)


def test_cli_exits_1_on_a_bad_spec(tmp_path: Path, capsys):
    case = next(c for c in CASES if c.name == "missing-comma-in-labels")
    spec = write_case(case, tmp_path)
    assert main(["check", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "error: unexpected `positive` after a complete setting" in out
    assert f"--> {spec}:3:17" in out


@pytest.mark.parametrize("output", ["text", "json", "github"])
def test_cli_never_crashes_on_the_table(tmp_path: Path, capsys, output: str):
    for i, case in enumerate(c for c in CASES if not crash_of(c)):
        (tmp_path / f"case{i:03}").mkdir()
        write_case(case, tmp_path / f"case{i:03}")
    assert main(["check", "--format", output, str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "internal error" not in captured.err


def test_regenerate_table(request, tmp_path_factory):
    """With `--regen-goldens`, write each case's current diagnostics into its table."""
    if not request.config.getoption("--regen-goldens"):
        pytest.skip("only with --regen-goldens")
    only = os.environ.get("REGEN_TABLE")
    for table in TABLE_FILES:
        if not only or table.name == only:
            _regenerate(table, tmp_path_factory)


def _regenerate(table: Path, tmp_path_factory) -> None:
    by_line = {case.line: case for case in CASES if case.table == table}
    out: list[str] = []
    lines = table.read_text(encoding="utf-8").splitlines()
    skipping, current = False, None
    for number, line in enumerate(lines, 1):
        if line.startswith("=== "):
            skipping, current = False, by_line[number]
        elif skipping and (line.startswith("#") or line.startswith("=== ")):
            skipping = False
        if skipping:
            continue
        out.append(line)
        if line == "--- expect" and current is not None:
            try:
                out += run_case(current, tmp_path_factory.mktemp(current.name))
            except Exception as error:  # a crash stays recorded as one
                out.append(f"{CRASH}{type(error).__name__}")
            out.append("")
            skipping = True
    table.write_text("\n".join(out).rstrip("\n") + "\n", encoding="utf-8")
