"""Predict with a run's output directory: `promptlang.load(path).predict([...])` and `promptlang predict`.

An output directory may come from someone else: everything in it is read as data and checked
before use (no pickle, no remote code), and a problem is an `ArtifactError` that names the
directory and what is wrong without repeating what the files say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import pydantic
import torch

from promptlang.compiler import plan as p
from promptlang.runtime.batches import pad
from promptlang.runtime import session as runtime
from promptlang.runtime.classifier import Classifier, classifier_inputs
from promptlang.runtime.data import Example
from promptlang.runtime.demos import DemoPool, Neighbours, SimilarSets, set_probabilities
from promptlang.runtime.models import family_of
from promptlang.runtime.placement import Placement, check_precision, resolve_device
from promptlang.runtime.similar import embeddings
from promptlang.runtime import text_training

EXTRAS = "extras.safetensors"
Positive = Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]
TokenId = Annotated[int, pydantic.Field(ge=0)]


class ArtifactError(ValueError):
    """An output directory that cannot be predicted with."""


class _Info(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")


class DemoSet(_Info):
    demos: Optional[list[TokenId]] = None
    calibration: Optional[list[Positive]] = None


class Similar(_Info):
    """`select similar`: the candidate demonstrations (token ids, by label, their texts) and the encoder."""

    encoder: str = pydantic.Field(min_length=1)
    top: float = pydantic.Field(gt=0, le=1)
    seed: int
    sets: int = pydantic.Field(ge=1, le=1024)
    per_label: int = pydantic.Field(ge=1, le=64)
    pool: list[list[TokenId]] = pydantic.Field(min_length=1)
    by_label: list[list[pydantic.NonNegativeInt]]
    texts: list[str]
    calibrations: Optional[list[list[Positive]]] = None

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> "Similar":
        if len(self.texts) != len(self.pool) or any(i >= len(self.pool) for rows in self.by_label for i in rows):
            raise ValueError("the candidates do not match")
        if self.calibrations is not None and len(self.calibrations) != self.sets:
            raise ValueError("one calibration per set")
        return self


class Extras(DemoSet):
    sets: Optional[list[DemoSet]] = pydantic.Field(None, min_length=1)
    similar: Optional[Similar] = None


class Source(_Info):
    """Where an untrained run's model came from (its weights were not saved)."""

    model: str
    tokenizer: str
    spec: Optional[dict] = None  # the spec's `model` block, and the spec's folder its paths are relative to
    directory: Optional[str] = None


class Info(_Info):
    """predictor.json: how the output directory predicts."""

    method: str = pydantic.Field(pattern=r"^[a-z_]{1,32}$", description="what trained it (a method's kind, or distilled)")
    family: Literal["masked", "causal", "seq2seq"]
    pattern: Optional[str] = pydantic.Field(None, description="the pattern it scores; none: a classification head")
    labels: list[str] = pydantic.Field(default_factory=list, description="none: it writes text")
    extras: Extras = Extras()
    max_length: Optional[int] = pydantic.Field(None, gt=0)
    source: Optional[Source] = None
    shared: bool = pydantic.Field(False, description="a mixture's task: the model is the mixture's, in `../model`")


@dataclass(frozen=True)
class Prediction:
    """One input's prediction: the most probable label (a regression's pole), the label probabilities,
    and what the task predicts, as text (the label, a regression's score, or the text a generating model
    wrote: it has no label, None, and no probabilities)."""

    label: str | None
    probabilities: dict[str, float]
    predicted: str


def _shown(text: str) -> str:
    """A path from a file, shown only when it holds nothing but printable characters."""
    return text if text.isprintable() and len(text) < 300 else "(a path that cannot be shown)"


def read_json(directory: Path, name: str, model: type[pydantic.BaseModel]):
    """A JSON file of the output directory, validated as `model`.

    Raises:
        ArtifactError: it is missing, unreadable, not JSON, or not what promptlang writes.
    """
    try:
        text = (directory / name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ArtifactError(f"{directory}: {name} is not UTF-8 text") from None
    except OSError as error:
        raise ArtifactError(f"{directory}: cannot read {name} ({error.strerror or type(error).__name__})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ArtifactError(f"{directory}: {name} is not JSON") from None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        what = (f"`{where}` is missing" if first["type"] == "missing" else f"`{where}` is not valid") if where \
            else "it is not a JSON object"
        raise ArtifactError(f"{directory}: {name} is not what promptlang writes ({what}); "
                            f"run the spec again to write the directory anew") from None


def check_info(directory: Path, info: Info, plan: p.Plan) -> None:
    """predictor.json agrees with plan.json."""
    if info.labels != plan.spec.labels:
        raise ArtifactError(f"{directory}: the labels in predictor.json are not those of plan.json")
    if info.pattern is not None and info.pattern not in plan.patterns:
        raise ArtifactError(f"{directory}: predictor.json names a pattern that plan.json does not have")
    for one in info.extras.sets or [info.extras]:
        if one.calibration is not None and len(one.calibration) != len(info.labels):
            raise ArtifactError(f"{directory}: a calibration in predictor.json does not have one value per label")


def model_places(directory: Path, info: Info) -> tuple[str, str, bool]:
    """(model, tokenizer, saved): what `from_pretrained` loads, and whether it is the saved `model/`."""
    if info.source is None:
        folder = (directory.parent if info.shared else directory) / "model"  # (a mixture's: its parent's only)
        if not folder.is_dir():
            raise ArtifactError(f"{directory}: the model folder {folder} is missing")
        return str(folder), str(folder), True
    source = info.source
    gone = [where for where in (source.model, source.tokenizer) if Path(where).is_absolute() and not Path(where).is_dir()]
    if gone:
        located = _locate_again(source)  # a converted GGUF model or a joined package: the cache was emptied
        if located is None:
            raise ArtifactError(f"{directory}: the model it was run with is not at {_shown(gone[0])} any more "
                                "(run the spec again)")
        return located, (located if source.tokenizer == source.model else source.tokenizer), False
    return source.model, source.tokenizer, False


def _locate_again(source: Source) -> str | None:
    """Where the spec's `gguf` or `package` model is now (made again in the cache), or None."""
    from promptlang.language import spec as m
    from promptlang.runtime.models import ModelError, locate

    if not source.spec or not source.directory or not ({"gguf", "package"} & set(source.spec)):
        return None
    try:
        return locate(m.Model.model_validate(source.spec), Path(source.directory)).name
    except (ModelError, OSError, ValueError):
        return None


def load_weights(directory: Path, info: Info):
    """(tokenizer, model) saved in `model/`, or for an untrained run from where its model came from."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM
    from transformers import AutoTokenizer

    loader = {"masked": AutoModelForMaskedLM, "causal": AutoModelForCausalLM,
              "seq2seq": AutoModelForSeq2SeqLM}[info.family]
    model_at, tokenizer_at, saved = model_places(directory, info)
    try:
        config = AutoConfig.from_pretrained(model_at, trust_remote_code=False)
        if family_of(config) != info.family:
            raise ArtifactError(f"{directory}: predictor.json says the model is {info.family}, "
                                f"but it is {family_of(config)}")
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_at, trust_remote_code=False)
        model = loader.from_pretrained(model_at, config=config, dtype=torch.float32, trust_remote_code=False,
                                       **({"use_safetensors": True} if saved else {}))
    except ArtifactError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ArtifactError(f"{directory}: cannot load the model from {_shown(model_at)} "
                            f"({type(error).__name__})") from None
    return tokenizer, model.eval()


def load_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """extras.safetensors (classifier head, soft prompt), {} when there is none."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / EXTRAS
    if not path.exists():
        return {}
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        raise ArtifactError(f"{directory}: {EXTRAS} is not a safetensors file") from None


def _need(directory: Path, tensors: dict, name: str, shape: tuple, what: str) -> torch.Tensor:
    """`tensors[name]`, which must have `shape`."""
    if name not in tensors:
        raise ArtifactError(f"{directory}: {EXTRAS} has no `{name}` ({what})")
    if tuple(tensors[name].shape) != shape or not tensors[name].is_floating_point():
        raise ArtifactError(f"{directory}: `{name}` in {EXTRAS} does not fit the model "
                            f"(it must be {' × '.join(map(str, shape))} numbers)")
    return tensors[name].float()


class Predictor:
    """A trained (or zero-shot) classifier loaded from a run's output directory."""

    def __init__(self, path: str | Path, device: str | None = None, precision: str | None = None):
        where = resolve_device(device)
        precision = precision or "fp32"
        check_precision(precision, where)
        self.path = Path(path)
        self.info = read_json(self.path, "predictor.json", Info)
        plan = read_json(self.path, "plan.json", p.Plan)
        check_info(self.path, self.info, plan)
        tokenizer, model = load_weights(self.path, self.info)
        if self.info.pattern is None:  # a head (PET's distilled classifier may sit on another model)
            from promptlang.compiler.compile import tokenizer_info

            plan = plan.model_copy(update={"family": self.info.family, "tokenizer": tokenizer_info(tokenizer)})
        self.session = runtime.Session(plan, tokenizer, model, cache=None, log=lambda text: None,
                                       placement=Placement(where, precision))
        self.classifier, self.soft = self._trained_parts(load_tensors(self.path))
        self._check_demos()

    def _trained_parts(self, tensors: dict):
        """The classifier head (finetune, distilled) or the soft prompt (when the pattern has one)."""
        session, size = self.session, self.session.model.config.get_text_config().hidden_size
        if self.info.pattern is None:
            classifier = Classifier(session.model, session.family, len(self.labels))
            classes = len(self.labels)
            head = {"weight": _need(self.path, tensors, "head.weight", (classes, size), "the classifier head"),
                    "bias": _need(self.path, tensors, "head.bias", (classes,), "the classifier head")}
            classifier.head.load_state_dict(head)
            return classifier, None
        count = sum(x.count for x in session.plan.patterns[self.info.pattern].pieces if x.kind == "soft")
        if not count:
            return None, None
        soft = runtime.scoring.SoftPrompt(session.model, count)
        soft.weight.data.copy_(_need(self.path, tensors, "soft", (count, size), "the soft prompt"))
        return None, soft

    def _check_demos(self) -> None:
        vocabulary = self.session.model.get_input_embeddings().num_embeddings
        similar = self.info.extras.similar
        pool = [{"demos": ids} for ids in similar.pool] if similar else []
        for one in [*(self.info.extras.sets or [self.info.extras]), *map(DemoSet.model_validate, pool)]:
            if any(i >= vocabulary for i in one.demos or []):
                raise ArtifactError(f"{self.path}: the demonstrations in predictor.json are not token ids "
                                    "of the model")

    @property
    def labels(self) -> list[str]:
        return self.session.spec.labels

    def _examples(self, inputs) -> list[Example]:
        columns = self.session.spec.data.text
        return [Example(dict(item)) if isinstance(item, dict) else Example({columns[0]: str(item)})
                for item in inputs]

    @property
    def writes(self) -> bool:
        """Whether the model writes text (text generation) rather than scoring labels."""
        return self.session.task.writes

    @torch.no_grad()
    def probabilities(self, inputs) -> np.ndarray:
        """Label probabilities (N, C) for texts (the first text column) or dicts of columns.

        Raises:
            ValueError: the model writes text (it has no labels): use `predict`.
        """
        session, examples = self.session, self._examples(inputs)
        method = session.spec.method
        if self.writes:
            raise ValueError("this model writes text and has no label probabilities; `predict` returns the text")
        if self.classifier is not None:
            ids = classifier_inputs(session, examples, self.info.max_length or method.max_length)
            padded, attention = pad(ids, session.plan.tokenizer.pad_id, session.device)
            with session.placement.autocast():
                return torch.softmax(self.classifier(padded, attention).float(), dim=1).cpu().numpy()
        pattern = session.plan.patterns[self.info.pattern]
        if self.info.extras.similar is not None:
            near = self.info.extras.similar
            return set_probabilities(session, pattern, examples, method.max_length, self.similar_sets(near),
                                     method.eval_batch_size, self.soft, near.calibrations)
        sets = self.info.extras.sets or [self.info.extras]
        calibrations = [one.calibration for one in sets] if all(one.calibration for one in sets) else None
        return set_probabilities(session, pattern, examples, method.max_length, [one.demos for one in sets if one.demos],
                                 method.eval_batch_size, self.soft, calibrations)

    def similar_sets(self, near: Similar) -> SimilarSets:
        """The `select similar` sets for new inputs: the candidates embedded again with the run's encoder."""
        pool = DemoPool(near.pool, near.by_label, near.per_label)
        columns = self.session.spec.data.text
        try:
            vectors = embeddings(near.encoder, near.texts, None)
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{self.path}: cannot load the sentence encoder {_shown(near.encoder)} that "
                                f"`select similar` needs ({type(error).__name__})") from None
        return SimilarSets(Neighbours(pool, vectors, near.encoder, near.top, columns), near.seed, near.sets)

    def predict(self, inputs) -> list[Prediction]:
        """The predicted label (a regression's score too) and the label probabilities for each input; for a
        model that writes text, the text it writes (with the run's `generate` decoding)."""
        if self.writes:
            session = self.session
            texts = text_training.write(session, session.plan.patterns[self.info.pattern], self._examples(inputs),
                                        session.spec.method.eval_batch_size)
            task = session.task
            if task.kind == "classification":  # the label the text names (None: no label), then the text
                return [Prediction(label or None, {}, text) for label, text in zip(task.predicted(texts), texts)]
            shown = task.predicted(texts) if task.kind == "regression" else texts
            return [Prediction(None, {}, text) for text in shown]
        probs = self.probabilities(inputs)
        shown = self.session.task.predicted(probs)
        return [Prediction(self.labels[int(row.argmax())], dict(zip(self.labels, map(float, row))), text)
                for row, text in zip(probs, shown)]


def load(path: str | Path, device: str | None = None, precision: str | None = None) -> Predictor:
    """Load a run's output directory for prediction, on `device` (auto: a GPU when there is one) at
    `precision` (fp32 unless given).

    Raises:
        ArtifactError: the directory cannot be predicted with (what is wrong, never what its files say).
        PlacementError: the device or the precision cannot be had on this machine.
    """
    return Predictor(path, device, precision)


def predictions_tsv(columns: list[str], labels: list[str], rows: list[dict], predictions) -> str:
    """`predict`'s table: each input's index and text columns, the prediction (a label, or a regression's
    score), the label probabilities."""
    lines = ["\t".join(["index", *columns, "predicted", *[f"p_{x}" for x in labels]])]
    for i, (row, prediction) in enumerate(zip(rows, predictions)):
        texts = [tsv_field(str(row.get(c) or "")) for c in columns]
        lines.append("\t".join([str(i), *texts, tsv_field(prediction.predicted),
                                *[f"{v:.6f}" for v in prediction.probabilities.values()]]))
    return "\n".join(lines) + "\n"


def tsv_field(text: str) -> str:
    """`text` as one TSV field: backslash, tab, line feed and carriage return written as escapes."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
