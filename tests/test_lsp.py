"""The language server (`promptlang lsp`) over stdio, driven by a scripted client that speaks JSON-RPC itself:
diagnostics equal to `promptlang check`'s, hover help from the spec model, completion, formatting, a clean exit,
and no torch in the server process."""

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from promptlang.cli import main
from promptlang.language import spec as m
from promptlang.language.builder import FILTERS, TOP_LEVEL
from promptlang.language.fmt import format_source
from promptlang.lsp import catalog

pytest.importorskip("pygls")

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "tokenizers", "numpy")  # what the front end never imports (test_packaging.py)
TIMEOUT = 30  # seconds a reply may take before the test fails (a hung server fails, never hangs)

SPEC = """promptlang 1

import "lib.prompt"

labels negative, positive

data {
  train "train.tsv"
  test  "train.tsv"
  unlabeled "train.tsv"
  text  sentence
}

model {
  hub    "roberta-large"
  family masked
}

template great "{{ sentence }} It was [MASK]."

method pet {
  patterns     great, it_was
  lerning_rate 3e-5
  loss         ce 0.9, mlm 0.1
  steps        10

  distill {
    temperature 2
  }
}
"""
LIBRARY = """promptlang 1

template it_was "{{ sentence }} All in all, it was [MASK]."

verbalizer sentiment {
  negative -> "bad"
  positive -> "good"
}
"""


# ---------------------------------------------------------------- the scripted client


class Client:
    """An editor, as far as the server can tell: Content-Length framed JSON-RPC over the server's stdio."""

    def __init__(self, *python_options: str, stderr=subprocess.DEVNULL):
        self.process = subprocess.Popen([sys.executable, *python_options, "-m", "promptlang", "lsp"], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        self.inbox: queue.Queue = queue.Queue()
        self.waiting: list[dict] = []  # notifications read while waiting for something else
        self.next_id = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("ascii").partition(":")
                headers[name.strip().lower()] = value.strip()
            if not line:
                return
            self.inbox.put(json.loads(stream.read(int(headers["content-length"])).decode("utf-8")))

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def notify(self, method: str, params: dict | None = None) -> None:
        self.send({"method": method, **({"params": params} if params is not None else {})})

    def request(self, method: str, params: dict | None = None):
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, **({"params": params} if params is not None else {})})
        reply = self._wait(lambda message: message.get("id") == self.next_id and "method" not in message)
        assert "error" not in reply, reply["error"]
        return reply["result"]

    def notification(self, method: str, uri: str | None = None) -> dict:
        """The params of the next notification `method` (about `uri`, when given)."""
        def wanted(message: dict) -> bool:
            return message.get("method") == method and (uri is None or message["params"].get("uri") == uri)
        for message in self.waiting:
            if wanted(message):
                self.waiting.remove(message)
                return message["params"]
        return self._wait(wanted)["params"]

    def _wait(self, wanted) -> dict:
        while True:
            try:
                message = self.inbox.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(f"the language server sent nothing for {TIMEOUT} s")
            if wanted(message):
                return message
            if "id" in message and "method" in message:  # a request from the server: answer it
                self.send({"id": message["id"], "result": None})
            else:
                self.waiting.append(message)

    def start(self) -> None:
        result = self.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        assert result["serverInfo"]["name"] == "promptlang"
        self.notify("initialized", {})

    def open(self, path: Path, text: str) -> list[dict]:
        """Open a buffer (its text need not be on disk) and return the diagnostics published for it."""
        uri = path.as_uri()
        self.notify("textDocument/didOpen",
                    {"textDocument": {"uri": uri, "languageId": "promptlang", "version": 1, "text": text}})
        return self.notification("textDocument/publishDiagnostics", uri)["diagnostics"]

    def stop(self) -> int:
        """Shut the server down as an editor does; its exit code."""
        try:
            assert self.request("shutdown") is None
            self.notify("exit")
            return self.process.wait(timeout=TIMEOUT)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        self.reader.join(timeout=TIMEOUT)
        self.process.stdin.close()
        self.process.stdout.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("lsp")
    (root / "train.tsv").write_text("label\tsentence\npositive\tfine\nnegative\tdull\n", encoding="utf-8")
    (root / "lib.prompt").write_text(LIBRARY, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def client():
    editor = Client()
    editor.start()
    yield editor
    editor.stop()


def where(text: str, marker: str, after: int | None = None) -> dict:
    """The LSP position of `marker` in `text` (plus `after` characters; default: just after the marker)."""
    return position_at(text, text.index(marker) + (len(marker) if after is None else after))


def position_at(text: str, at: int) -> dict:
    """The LSP position (UTF-16 columns) of a character offset."""
    line = text.count("\n", 0, at)
    column = at - (text.rfind("\n", 0, at) + 1)
    return {"line": line, "character": len(text[at - column:at].encode("utf-16-le")) // 2}


# ---------------------------------------------------------------- diagnostics


def checked(path: Path, capsys) -> list[dict]:
    """What `promptlang check --format json` reports for a file on disk."""
    main(["check", "--format", "json", str(path)])
    return json.loads(capsys.readouterr().out)["diagnostics"]


def expected_lsp(item: dict, text: str) -> dict:
    """An editor diagnostic as `check`'s JSON describes it: 0-based lines, UTF-16 columns, the hint below."""
    lines = text.split("\n")

    def position(line: int, col: int) -> dict:
        return {"line": line - 1, "character": len(lines[line - 1][:col - 1].encode("utf-16-le")) // 2}

    severity = {"error": 1, "warning": 2, "note": 3}[item["severity"]]
    message = item["message"] + (f"\nhelp: {item['hint']}" if item["hint"] else "")
    return {"range": {"start": position(item["line"], item["col"]), "end": position(item["end_line"], item["end_col"])},
            "message": message, "severity": severity, "source": "promptlang"}


BROKEN = [  # (case, the spec's text): each has problems that `check` reports
    ("unknown setting", SPEC),
    ("wide characters before the problem", SPEC.replace('"{{ sentence }} It',
                                                        '"😀 ünï {{ sentense }} It')),
    ("a syntax error", SPEC.replace("steps        10", "steps        10 {")),
    ("a warning and errors", SPEC.replace("  test  \"train.tsv\"\n", "").replace("pet {", "zero_shot {")),
    ("a missing data file", SPEC.replace('train "train.tsv"', 'train "trian.tsv"')),
]


@pytest.mark.parametrize("case, text", BROKEN, ids=[case for case, _ in BROKEN])
def test_diagnostics_are_what_check_reports(client, folder, capsys, case, text):
    path = folder / f"{case.replace(' ', '_')}.prompt"
    path.write_text(text, encoding="utf-8")
    reported = checked(path, capsys)
    assert reported, "the case must have problems"
    published = client.open(path, text)
    assert published == [expected_lsp(item, text) for item in reported]


@pytest.mark.parametrize("path", sorted((ROOT / "specs").rglob("*.prompt")), ids=lambda p: p.name)
def test_every_spec_is_checked_in_the_editor_as_check_checks_it(client, capsys, path):
    text = path.read_text(encoding="utf-8")
    assert client.open(path, text) == [expected_lsp(item, text) for item in checked(path, capsys)]


def test_an_unsaved_buffer_is_checked_and_a_change_that_fixes_it_clears_it(client, folder):
    path = folder / "unsaved.prompt"  # never written: the buffer is all there is; its import is read from disk
    assert not path.exists()
    published = client.open(path, SPEC)
    assert [d["message"] for d in published] == [
        "unknown setting `lerning_rate` in `method`\nhelp: did you mean `learning_rate`?"]
    start = where(SPEC, "lerning_rate", 0)
    change = {"range": {"start": start, "end": {**start, "character": start["character"] + len("lerning")}},
              "text": "learning"}
    client.notify("textDocument/didChange",
                  {"textDocument": {"uri": path.as_uri(), "version": 2}, "contentChanges": [change]})
    assert client.notification("textDocument/publishDiagnostics", path.as_uri())["diagnostics"] == []
    whole = SPEC.replace('"lib.prompt"', '"lib2.prompt"')  # a change that sends the whole text
    client.notify("textDocument/didChange", {"textDocument": {"uri": path.as_uri(), "version": 3},
                                             "contentChanges": [{"text": whole}]})
    published = client.notification("textDocument/publishDiagnostics", path.as_uri())["diagnostics"]
    assert published[0]["message"].startswith("cannot import `lib2.prompt`: no such file\nhelp: ")
    assert published[0]["range"] == {"start": {"line": 2, "character": 0}, "end": {"line": 2, "character": 20}}


# ---------------------------------------------------------------- hover


def help_of(model, name: str) -> str:
    return model.model_fields[name].description


HOVERS = [  # (marker in SPEC, offset into it, the hover text)
    ("lerning_rate", 0, None),  # no such setting: no help
    ("steps ", 2, "**steps** — a whole number\n\n" + help_of(m.Training, "steps")),
    ("family", 1, "**family** — `auto` | `masked` | `causal` | `seq2seq`, default `auto`\n\n"
                  + help_of(m.Model, "family")),
    ("mlm", 1, "**mlm** — a number, default `0.0`\n\n" + help_of(m.Loss, "mlm")),
    ("temperature", 4, "**temperature** — a number, default `2.0`\n\n" + help_of(m.Distill, "temperature")),
    ("distill", 0, "**distill** — a block\n\n" + help_of(m.Pet, "distill")),
    ("text  sentence", 1, "**text** — a list\n\n" + help_of(m.Data, "text")),
    ("data {", 0, "**data**\n\n" + m.Data.__doc__),
    ("labels", 3, "**labels**\n\n" + help_of(m.Spec, "labels")),
    ("{{ sentence }} It", 4, None),  # inside a string
]


@pytest.mark.parametrize("marker, offset, text", HOVERS, ids=[f"{marker}+{offset}" for marker, offset, _ in HOVERS])
def test_hover_shows_the_spec_models_help(client, folder, marker, offset, text):
    path = folder / "hover.prompt"
    client.open(path, SPEC)
    found = client.request("textDocument/hover", {"textDocument": {"uri": path.as_uri()},
                                                  "position": where(SPEC, marker, offset)})
    assert (found["contents"]["value"] if found else None) == text


def test_every_setting_has_help_text():
    missing = [f"{model.__name__}.{name}" for model in catalog.all_models()
               for name, field in catalog.settings(model).items() if not field.description]
    assert missing == []


# ---------------------------------------------------------------- completion


def settings_of(model) -> list[str]:
    return [name for name in model.model_fields if name not in ("kind", "version")]


COMPLETIONS = [  # (case, the buffer, the text before the cursor (last occurrence), the labels offered)
    ("statements", SPEC + "\n", SPEC + "\n", list(TOP_LEVEL)),
    ("method's settings", SPEC, "  steps        10\n", settings_of(m.Pet)),
    ("a typed prefix", SPEC.replace("  steps        10\n", "  steps        10\n  lea\n"), "  lea",
     settings_of(m.Pet)),
    ("nested block", SPEC, "  distill {\n", settings_of(m.Distill)),
    ("model's settings", SPEC, "model {\n", settings_of(m.Model)),
    ("data fields in a template", SPEC.replace("[MASK].\"\n\nmethod", "[MASK]. {{ \"\n\nmethod"),
     "[MASK]. {{ ", ["label", "sentence"]),
    ("an unfinished field", SPEC.replace("[MASK].\"\n\nmethod", "[MASK]. {{ sen\n\nmethod"), "{{ sen",
     ["label", "sentence"]),
    ("filters", SPEC.replace("{{ sentence }} It", "{{ sentence | }} It"), "{{ sentence | ", FILTERS),
    ("text columns", SPEC, "  text  ", ["label", "sentence"]),
    ("patterns name templates", SPEC, "patterns     ", ["it_was", "great"]),  # the import's first
    ("after a comma", SPEC, "patterns     great, ", ["it_was", "great"]),
    ("a verbalizer's name", SPEC.replace("template great \"{{ sentence }} It was [MASK].\"",
                                         "template great {\n  text \"x [MASK]\"\n  verbalizer \n}"),
     "  verbalizer ", ["sentiment"]),
    ("choices", SPEC, "family ", ["auto", "masked", "causal", "seq2seq"]),
    ("a list of choices", SPEC + "\nevaluate {\n  metrics accuracy, \n}\n", "metrics accuracy, ",
     [metric.value for metric in m.Metric]),
    ("named values", SPEC, "loss         ce 0.9, ", settings_of(m.Loss)),
    ("method names", SPEC, "method ", list(m.METHOD_KINDS)),
    ("a verbalizer's labels", SPEC + "\nverbalizer v {\n  \n}\n", "verbalizer v {\n  ",
     ["negative", "positive", "aggregate"]),
    ("comment", SPEC.replace("steps        10", "steps        10  # st"), "# st", []),
]


@pytest.mark.parametrize("case, text, before, labels", COMPLETIONS, ids=[case for case, *_ in COMPLETIONS])
def test_completion_offers_what_the_place_takes(client, folder, case, text, before, labels):
    path = folder / "complete.prompt"
    client.open(path, text)
    at = text.rindex(before) + len(before)
    found = client.request("textDocument/completion", {"textDocument": {"uri": path.as_uri()},
                                                       "position": position_at(text, at)})
    assert [item["label"] for item in found["items"]] == labels


# ---------------------------------------------------------------- formatting


def test_formatting_is_fmts_output(client, folder, tmp_path):
    messy = SPEC.replace("  family masked", "    family    masked").replace("\n\nmodel", "\n\n\n\nmodel")
    path = folder / "messy.prompt"
    client.open(path, messy)
    edits = client.request("textDocument/formatting", {"textDocument": {"uri": path.as_uri()},
                                                       "options": {"tabSize": 2, "insertSpaces": True}})
    lines = messy.split("\n")
    assert [edit["range"] for edit in edits] == [
        {"start": {"line": 0, "character": 0}, "end": {"line": len(lines) - 1, "character": len(lines[-1])}}]
    on_disk = tmp_path / "messy.prompt"
    on_disk.write_text(messy, encoding="utf-8")
    assert main(["fmt", str(on_disk)]) == 0
    assert edits[0]["newText"] == on_disk.read_text(encoding="utf-8") == format_source(messy)[0]


@pytest.mark.parametrize("case, text", [("formatted", format_source(SPEC)[0]), ("syntax error", SPEC + "}\n")])
def test_formatting_gives_no_edits(client, folder, case, text):
    path = folder / f"fmt-{case.replace(' ', '-')}.prompt"
    client.open(path, text)
    assert client.request("textDocument/formatting", {"textDocument": {"uri": path.as_uri()},
                                                      "options": {"tabSize": 2, "insertSpaces": True}}) == []


# ---------------------------------------------------------------- the process


def imported_modules(importtime: str) -> set[str]:
    """Every module a process imported, from its `python -X importtime` report."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime.splitlines() if line.startswith("import time:")}


def test_a_whole_session_imports_no_torch_and_exits_cleanly(folder, tmp_path):
    log = tmp_path / "importtime.txt"
    with log.open("wb") as stderr:
        editor = Client("-X", "importtime", stderr=stderr)
        editor.start()
        path = folder / "session.prompt"
        assert editor.open(path, SPEC)
        editor.request("textDocument/hover", {"textDocument": {"uri": path.as_uri()}, "position": where(SPEC, "steps")})
        editor.request("textDocument/completion", {"textDocument": {"uri": path.as_uri()},
                                                   "position": where(SPEC, "family ")})
        editor.request("textDocument/formatting", {"textDocument": {"uri": path.as_uri()},
                                                   "options": {"tabSize": 2, "insertSpaces": True}})
        editor.notify("textDocument/didClose", {"textDocument": {"uri": path.as_uri()}})
        assert editor.notification("textDocument/publishDiagnostics", path.as_uri())["diagnostics"] == []
        assert editor.stop() == 0
    modules = imported_modules(log.read_text(encoding="utf-8"))
    assert {"pygls", "promptlang.lsp.server", "promptlang.api"} <= modules  # the report is read right
    assert sorted(name for name in modules if name.split(".")[0] in HEAVY) == []


def test_without_pygls_the_command_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pygls", None)  # `import pygls` now fails as if it were not installed
    assert main(["lsp"]) == 2
    assert capsys.readouterr().err == \
        "promptlang: error: the language server needs pygls: pip install 'promptlang[lsp]'\n"
