"""The TextMate grammar (editors/vscode/syntaxes/promptlang.tmLanguage.json) and the VS Code extension: every regex
compiles in the subset Oniguruma and Python share, every spec tokenizes, sample lines get their scopes, and every
keyword of the language (statements, settings, methods, filters, choices) is highlighted, so the grammar cannot
drift from grammar/promptlang.lark and the spec model."""

import json
import re
from pathlib import Path

import pytest

from promptlang.language import spec as m
from promptlang.language.builder import FILTERS, TOP_LEVEL
from promptlang.lsp import catalog

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "editors" / "vscode"
GRAMMAR = json.loads((EXTENSION / "syntaxes" / "promptlang.tmLanguage.json").read_text(encoding="utf-8"))
LARK = (ROOT / "grammar" / "promptlang.lark").read_text(encoding="utf-8")

# Oniguruma syntax that Python's `re` reads differently or not at all: kept out of the grammar.
NOT_SHARED = [r"(?<name>", r"\h", r"\H", r"\G", r"\A", r"\z", r"\Z", r"\K", r"\R", r"\X", r"\p{", r"\P{", "(?~",
              "(?>", "++", "*+", "?+", "(?i:", r"\o{", r"\x{"]
PROPERTY, BLOCK, STATEMENT = ("support.type.property-name.promptlang", "keyword.other.block.promptlang",
                              "keyword.other.statement.promptlang")


# ---------------------------------------------------------------- a small TextMate tokenizer


def _rules(node: dict) -> list[dict]:
    """The rules a `patterns` list stands for, includes expanded."""
    out = []
    for rule in node.get("patterns", []):
        if "include" in rule:
            target = GRAMMAR if rule["include"] == "$self" else GRAMMAR["repository"][rule["include"][1:]]
            out += _rules(target) if "match" not in target and "begin" not in target else [target]
        else:
            out.append(rule)
    return out


def _scopes(rule_captures: dict, match: re.Match, line_scopes: list, base: list, name: str | None) -> None:
    """Give the characters of a match their scopes: the rule's name, then each capture's."""
    for i in range(match.start(), match.end()):
        line_scopes[i] = base + ([name] if name else [])
    for group, capture in (rule_captures or {}).items():
        start, end = match.span(int(group))
        for i in range(max(start, 0), end):
            line_scopes[i] = line_scopes[i] + [capture["name"]]


def tokenize(text: str) -> list[list[tuple[str, list[str]]]]:
    """Each line's tokens as (text, scopes): at each position the rule matching earliest wins (the first listed
    on a tie, an open rule's `end` before its patterns), as TextMate does; a `begin` rule stays open across lines."""
    stack: list[dict] = []  # open begin/end rules
    out = []
    for line in text.split("\n"):
        line += "\n"
        scopes: list[list[str]] = [[] for _ in line]
        pos = 0
        while pos < len(line):
            base = [rule["name"] for rule in stack if rule.get("name")]
            top = stack[-1] if stack else GRAMMAR
            candidates = ([("end", re.compile(top["end"]))] if stack else []) + \
                [(rule, re.compile(rule.get("match") or rule["begin"])) for rule in _rules(top)]
            found = [(match.start(), order, rule, match) for order, (rule, pattern) in enumerate(candidates)
                     if (match := pattern.search(line, pos))]
            if not found:
                for i in range(pos, len(line)):
                    scopes[i] = base
                break
            start, _, rule, match = min(found, key=lambda item: item[:2])
            for i in range(pos, start):
                scopes[i] = base
            if rule == "end":
                closing = stack.pop()
                _scopes(closing.get("endCaptures"), match, scopes, base, None)
            elif "begin" in rule:
                _scopes(rule.get("beginCaptures"), match, scopes, base, rule.get("name"))
                stack.append(rule)
            else:
                _scopes(rule.get("captures"), match, scopes, base, rule.get("name"))
            pos = match.end() if match.end() > pos else pos + 1
        out.append(_runs(line[:-1], scopes))
    assert stack == [], "a block or string is still open at the end of the text"
    return out


def _runs(line: str, scopes: list) -> list[tuple[str, list[str]]]:
    runs: list[tuple[str, list[str]]] = []
    for char, scope in zip(line, scopes):
        if runs and runs[-1][1] == scope:
            runs[-1] = (runs[-1][0] + char, scope)
        else:
            runs.append((char, scope))
    return runs


def scope_of(text: str, line: int, word: str) -> list[str]:
    """The scopes of `word` on a line of `text` (0-based), which must be one token."""
    for token, scopes in tokenize(text)[line]:
        if token.strip() == word:
            return scopes
    raise AssertionError(f"no token {word!r} on line {line}: {tokenize(text)[line]}")


# ---------------------------------------------------------------- the grammar's patterns


def all_patterns(node=GRAMMAR) -> list[str]:
    found = []
    if isinstance(node, dict):
        found += [node[key] for key in ("match", "begin", "end") if key in node]
        for value in node.values():
            found += all_patterns(value)
    elif isinstance(node, list):
        for value in node:
            found += all_patterns(value)
    return found


@pytest.mark.parametrize("pattern", all_patterns(), ids=lambda p: p[:40])
def test_every_pattern_compiles_in_the_shared_subset(pattern):
    re.compile(pattern)
    try:
        import regex
    except ImportError:
        regex = None
    if regex is not None:
        regex.compile(pattern)
    assert [construct for construct in NOT_SHARED if construct in pattern] == []


def test_every_include_names_a_rule():
    includes = re.findall(r'"include": "#([\w-]+)"', json.dumps(GRAMMAR))
    assert includes and set(includes) <= set(GRAMMAR["repository"])


# ---------------------------------------------------------------- the language's words are all highlighted


def spec_settings() -> list[str]:
    return sorted({name for model in catalog.all_models() for name in catalog.settings(model)})


def spec_choices() -> list[str]:
    return sorted({choice for model in catalog.all_models() for field in catalog.settings(model).values()
                   for choice in catalog.choices(field)})


def lark_keywords() -> set[str]:
    """The words grammar/promptlang.lark spells out (`"import"`), besides punctuation."""
    return set(re.findall(r'"([a-z]+)"', re.sub(r"//[^\n]*", "", LARK)))


def test_the_lark_grammars_keywords_are_statements_here():
    assert lark_keywords() == {"promptlang", "import", "labels", "template"}
    assert lark_keywords() - {"promptlang"} <= set(TOP_LEVEL)
    assert scope_of("promptlang 1", 0, "promptlang") == ["keyword.other.header.promptlang"]
    assert scope_of('import "x.prompt"', 0, "import") == ["keyword.control.import.promptlang"]


@pytest.mark.parametrize("statement", [name for name in TOP_LEVEL if name != "import"])  # import: above
def test_every_statement_is_a_keyword(statement):
    assert scope_of(f"{statement} x {{\n}}", 0, statement)[-1] == STATEMENT


@pytest.mark.parametrize("setting", spec_settings())
def test_every_setting_of_the_spec_model_is_highlighted(setting):
    text = f"method pet {{\n  {setting} 1\n  {setting} {{\n  }}\n}}"
    assert scope_of(text, 1, setting)[-1] == PROPERTY
    nested = scope_of(text, 2, setting)[-1]
    assert nested == (BLOCK if setting in {"distill", "ipet", "loss", "label_word_search", "template_search",
                                           "label_values"} else PROPERTY)


@pytest.mark.parametrize("kind", [*m.METHOD_KINDS, *m.TASK_KINDS])
def test_every_method_and_task_name_is_highlighted(kind):
    head = "task" if kind in m.TASK_KINDS else "method"
    assert scope_of(f"{head} {kind} {{\n}}", 0, kind)[-1] == "entity.name.type.method.promptlang"


@pytest.mark.parametrize("name", FILTERS)
def test_every_filter_is_highlighted(name):
    assert scope_of(f'template t "{{{{ a | {name} }}}}"', 0, name)[-1] == "support.function.filter.promptlang"


@pytest.mark.parametrize("choice", spec_choices())
def test_every_choice_is_highlighted(choice):
    expected = "constant.language.promptlang" if choice in ("true", "false") else "support.constant.choice.promptlang"
    assert scope_of(f"model {{\n  family {choice}\n}}", 1, choice)[-1] == expected


def test_the_grammar_names_nothing_the_language_lacks():
    words = set(re.findall(r"[a-z][a-z0-9_]+", " ".join(all_patterns())))
    known = {*spec_settings(), *spec_choices(), *TOP_LEVEL, *FILTERS, *m.METHOD_KINDS, *m.TASK_KINDS,
             "promptlang", "none", "head", "tail", "label_values"}
    assert sorted(words - known) == []


# ---------------------------------------------------------------- sample lines and the specs


SAMPLE = '''promptlang 1
import "common/sentiment.prompt"  # shared
labels negative, positive
template it_was "{{ sentence | lower_first }} It was [MASK]. [DEMOS]"
verbalizer v {
  positive -> "great", "good"
}
method pet {
  learning_rate 1e-5
  loss          ce 0.9, mlm 0.1
  lerning_rate  3
  select_model  last
  calibrate     true
}
template multi """a "quoted" {{ text }}
[SOFT:4] [SEP] \\n"""'''

SCOPES = [  # (line, token, its scopes, innermost last)
    (0, "promptlang", ["keyword.other.header.promptlang"]),
    (0, "1", ["constant.numeric.version.promptlang"]),
    (1, "import", ["keyword.control.import.promptlang"]),
    (1, "common/sentiment.prompt", ["string.quoted.double.promptlang"]),
    (1, "#", ["comment.line.number-sign.promptlang", "punctuation.definition.comment.promptlang"]),
    (1, "shared", ["comment.line.number-sign.promptlang"]),
    (2, "labels", [STATEMENT]),
    (2, ",", ["punctuation.separator.comma.promptlang"]),
    (3, "template", [STATEMENT]),
    (3, "it_was", ["entity.name.type.definition.promptlang"]),
    (3, "sentence", ["string.quoted.double.promptlang", "meta.embedded.field.promptlang",
                     "variable.other.field.promptlang"]),
    (3, "lower_first", ["string.quoted.double.promptlang", "meta.embedded.field.promptlang",
                        "support.function.filter.promptlang"]),
    (3, "[MASK]", ["string.quoted.double.promptlang", "constant.other.placeholder.mask.promptlang"]),
    (3, "[DEMOS]", ["string.quoted.double.promptlang", "constant.other.placeholder.demos.promptlang"]),
    (5, "positive", ["meta.block.promptlang", "variable.other.label.promptlang"]),
    (5, "->", ["meta.block.promptlang", "keyword.operator.arrow.promptlang"]),
    (7, "pet", ["entity.name.type.method.promptlang"]),
    (8, "learning_rate", ["meta.block.promptlang", PROPERTY]),
    (8, "1e-5", ["meta.block.promptlang", "constant.numeric.promptlang"]),
    (9, "ce", ["meta.block.promptlang", PROPERTY]),
    (9, "0.9", ["meta.block.promptlang", "constant.numeric.promptlang"]),
    (10, "lerning_rate", ["meta.block.promptlang"]),  # not a setting: not highlighted as one
    (11, "last", ["meta.block.promptlang", "support.constant.choice.promptlang"]),
    (12, "true", ["meta.block.promptlang", "constant.language.promptlang"]),
    (14, "multi", ["entity.name.type.definition.promptlang"]),
    (14, "text", ["string.quoted.triple.promptlang", "meta.embedded.field.promptlang",
                  "variable.other.field.promptlang"]),
    (15, "[SOFT:4]", ["string.quoted.triple.promptlang", "constant.other.placeholder.soft.promptlang"]),
    (15, "[SEP]", ["string.quoted.triple.promptlang", "constant.other.placeholder.sep.promptlang"]),
    (15, "\\n", ["string.quoted.triple.promptlang", "constant.character.escape.promptlang"]),
]


@pytest.mark.parametrize("line, token, scopes", SCOPES, ids=[f"{line}:{token}" for line, token, _ in SCOPES])
def test_sample_lines_get_their_scopes(line, token, scopes):
    assert scope_of(SAMPLE, line, token) == scopes


SPECS = sorted((ROOT / "specs").rglob("*.prompt"))
_KEY = re.compile(r"^\s+((?!\d)\w+)\b(?!\s*->)")


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT / "specs")))
def test_every_spec_tokenizes_and_its_settings_are_highlighted(path):
    text = path.read_text(encoding="utf-8")
    lines = tokenize(text)  # every block and string closes
    assert lines[0][0] == ("promptlang", ["keyword.other.header.promptlang"])
    for number, line in enumerate(text.split("\n")):
        key = _KEY.match(line)
        if key and not any(scope.startswith("string") for scope in scope_of(text, number, key.group(1))):
            assert scope_of(text, number, key.group(1))[-1] in (PROPERTY, BLOCK), (number + 1, line)


# ---------------------------------------------------------------- the extension folder


def test_the_extension_declares_the_language_and_the_server():
    package = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
    language = package["contributes"]["languages"][0]
    assert (language["id"], language["extensions"]) == ("promptlang", [".prompt"])
    assert language["firstLine"] == "^promptlang 1"
    grammar = package["contributes"]["grammars"][0]
    assert (grammar["language"], grammar["scopeName"]) == ("promptlang", GRAMMAR["scopeName"])
    assert (EXTENSION / grammar["path"]).resolve() == (EXTENSION / "syntaxes" / "promptlang.tmLanguage.json")
    assert (EXTENSION / language["configuration"]).is_file()
    assert "vscode-languageclient" in package["dependencies"]
    assert (EXTENSION / package["main"]).is_file()
    settings = package["contributes"]["configuration"]["properties"]
    assert (settings["promptlang.server.command"]["default"], settings["promptlang.server.args"]["default"]) == \
        ("promptlang", ["lsp"])


def test_the_language_configuration():
    config = json.loads((EXTENSION / "language-configuration.json").read_text(encoding="utf-8"))
    assert config["comments"] == {"lineComment": "#"}
    assert config["brackets"] == [["{", "}"], ["[", "]"], ["(", ")"]]
    assert {"open": '"', "close": '"', "notIn": ["string", "comment"]} in config["autoClosingPairs"]
