"""Predict with a run's output directory: `promptlang.load(path).predict([...])` and `promptlang predict`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from promptlang import plan as p
from promptlang import runtime
from promptlang.data import Example

EXTRAS = "extras.safetensors"


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]


def save_extras(directory: Path, outcome) -> dict:
    """Write an outcome's tensors (classifier head, soft prompt) and return its JSON-able extras."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in outcome.extras.items() if isinstance(v, torch.Tensor)}
    if tensors:
        save_file(tensors, str(directory / EXTRAS))
    return {k: v for k, v in outcome.extras.items() if not isinstance(v, torch.Tensor)}


class Predictor:
    """A trained (or zero-shot) classifier loaded from a run's output directory."""

    def __init__(self, path: str | Path):
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

        self.path = Path(path)
        self.info = json.loads((self.path / "predictor.json").read_text(encoding="utf-8"))
        plan = p.Plan.model_validate_json((self.path / "plan.json").read_text(encoding="utf-8"))
        family = self.info.get("family", plan.family)
        loader = {"masked": AutoModelForMaskedLM, "causal": AutoModelForCausalLM,
                  "seq2seq": AutoModelForSeq2SeqLM}[family]
        tokenizer = AutoTokenizer.from_pretrained(str(self.path / "model"))
        model = loader.from_pretrained(str(self.path / "model"), dtype=torch.float32).eval()
        if self.info["method"] == "distilled":  # PET's final classifier may sit on another model
            from promptlang.compiler import tokenizer_info

            plan = plan.model_copy(update={"family": family, "tokenizer": tokenizer_info(tokenizer)})
        self.session = runtime.Session(plan, tokenizer, model, cache=None, log=lambda text: None)
        self.tensors = {}
        if (self.path / EXTRAS).is_file():
            from safetensors.torch import load_file

            self.tensors = load_file(str(self.path / EXTRAS))

    @property
    def labels(self) -> list[str]:
        return self.session.spec.labels

    def _examples(self, inputs) -> list[Example]:
        columns = self.session.spec.data.text
        return [Example(dict(item)) if isinstance(item, dict) else Example({columns[0]: str(item)})
                for item in inputs]

    @torch.no_grad()
    def probabilities(self, inputs) -> np.ndarray:
        """Label probabilities (N, C) for texts (the first text column) or dicts of columns."""
        session, examples = self.session, self._examples(inputs)
        method = session.spec.method
        if self.info["method"] in ("finetune", "distilled"):
            classifier = runtime.Classifier(session.model, session.family, len(self.labels))
            classifier.head.load_state_dict({"weight": self.tensors["head.weight"], "bias": self.tensors["head.bias"]})
            ids = runtime.classifier_inputs(session, examples, self.info.get("max_length", method.max_length))
            padded, attention = runtime.scoring.pad(ids, session.plan.tokenizer.pad_id)
            return torch.softmax(classifier(padded, attention), dim=1).numpy()
        pattern = session.plan.patterns[self.info["pattern"]]
        soft = None
        if "soft" in self.tensors:
            soft = runtime.scoring.SoftPrompt(session.model, self.tensors["soft"].shape[0])
            soft.weight.data.copy_(self.tensors["soft"])
        sets = self.info["extras"].get("sets") or [self.info["extras"]]
        total = 0
        for one in sets:
            demos = [one["demos"]] * len(examples) if one.get("demos") else None
            encoded = session.encode(pattern, examples, method.max_length, demos)
            probs = runtime.probabilities(session, pattern, encoded, method.eval_batch_size, soft)
            if one.get("calibration"):
                probs = runtime.calibrate(probs, np.array(one["calibration"]))
            total = total + probs
        return total / len(sets)

    def predict(self, inputs) -> list[Prediction]:
        """The predicted label and label probabilities for each input."""
        probs = self.probabilities(inputs)
        return [Prediction(self.labels[int(row.argmax())], dict(zip(self.labels, map(float, row)))) for row in probs]


def load(path: str | Path) -> Predictor:
    """Load a run's output directory for prediction."""
    return Predictor(path)
