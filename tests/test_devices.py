"""Devices and precision: the session owns the device (every tensor a model is given lives there), mixed
precision runs through autocast (fp16 with a gradient scaler), the output records where a run ran, and a
device or precision this machine cannot give is a usage error.

`pytest --device cuda` (or cpu, mps) runs every runtime test on that device; without it, `auto`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.cli import main  # noqa: E402
from promptlang.runtime import placement as pl  # noqa: E402
from promptlang import runner  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = '''  train "data.tsv"
  dev   "data.tsv"
  test  "data.tsv"
  unlabeled "data.tsv"
  text  sentence'''
TRAIN = "{\n  steps 2\n  batch_size 2\n  eval_batch_size 3\n  seeds 1\n}"
HAS_CUDA = torch.cuda.is_available()
HAS_MPS = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()

pytestmark = pytest.mark.usefixtures("promptlang_cache")


def write(folder: Path, model_dirs, family: str, method: str, extra_model: str = "") -> Path:
    tinymodels.write_data(folder)
    text = tinymodels.spec_text(family=family, path=str(model_dirs[family]), data=DATA, method=method)
    if extra_model:
        text = text.replace(f"  family {family}\n", f"  family {family}\n  {extra_model}\n")
    path = folder / "spec.prompt"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- naming a device


ERRORS = [
    ("gpu", "`--device gpu` is not a device: use auto, cpu, cuda, cuda:N or mps"),
    ("cuda:x", "`--device cuda:x` is not a device: use auto, cpu, cuda, cuda:N or mps"),
    ("tpu:0", "`--device tpu:0` is not a device: use auto, cpu, cuda, cuda:N or mps"),
]
if not HAS_CUDA:
    ERRORS.append(("cuda:1", f"`--device cuda:1` asks for a CUDA GPU, but torch sees none on this machine "
                             f"(torch {torch.__version__}); use `--device cpu` or `--device auto`"))
if not HAS_MPS:
    ERRORS.append(("mps", "`--device mps` asks for Apple's GPU, but this machine has none; "
                          "use `--device cpu` or `--device auto`"))


@pytest.mark.parametrize("name, message", ERRORS)
def test_a_device_that_cannot_be_had_is_refused_with_what_to_use(name, message):
    with pytest.raises(pl.PlacementError) as error:
        pl.resolve_device(name)
    assert str(error.value) == message


@pytest.mark.parametrize("name, expected", [("cpu", "cpu"), ("CPU", "cpu"), (" cpu ", "cpu"),
                                            ("auto", "cuda:0" if HAS_CUDA else "mps" if HAS_MPS else "cpu")])
def test_devices_by_name(name, expected):
    assert str(pl.resolve_device(name)) == expected


def test_the_default_device_is_the_environment_s_else_auto(monkeypatch):
    monkeypatch.setenv("PROMPTLANG_DEVICE", "cpu")
    assert pl.resolve_device(None) == torch.device("cpu")
    monkeypatch.setenv("PROMPTLANG_DEVICE", "gpu")
    with pytest.raises(pl.PlacementError):
        pl.resolve_device(None)
    monkeypatch.delenv("PROMPTLANG_DEVICE")
    assert pl.default_device() == "auto"


def test_run_on_a_device_that_is_not_there_is_a_usage_error(tmp_path, model_dirs, capsys):
    spec = write(tmp_path, model_dirs, "masked", "zero_shot {}")
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--device", "gpu"]) == 2
    assert capsys.readouterr().err == ("promptlang: error: `--device gpu` is not a device: use auto, cpu, cuda, "
                                       "cuda:N or mps\n")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- every tensor on the session's device


def _watch(model, device: torch.device, seen: list) -> None:
    """Fail when any module of `model` is given a tensor that is not on `device`."""
    def check(module, args, kwargs):
        for value in [*args, *kwargs.values()]:
            if isinstance(value, torch.Tensor):
                assert value.device == device, f"{type(module).__name__} got a tensor on {value.device}"
                seen.append(value.dtype)
    for module in model.modules():
        module.register_forward_pre_hook(check, with_kwargs=True)


CASES = [("masked", "zero_shot {\n  calibrate true\n  eval_batch_size 3\n}"),
         ("causal", "prompt_finetune " + TRAIN), ("seq2seq", "prompt_finetune " + TRAIN),
         ("masked", "finetune " + TRAIN), ("causal", "finetune " + TRAIN),
         ("masked", "pet {\n  steps 2\n  batch_size 2\n  mlm 0.5\n  seeds 1\n  distill {\n    steps 2\n  }\n}")]


@pytest.mark.parametrize("family, method", CASES, ids=[f"{f} {m.split()[0]}" for f, m in CASES])
def test_every_tensor_a_model_is_given_is_on_the_session_s_device(family, method, tmp_path, model_dirs,
                                                                   monkeypatch):
    if "mlm" in method:
        method = method.replace("  mlm 0.5\n", "  loss {\n    mlm 0.5\n  }\n")
    spec = write(tmp_path, model_dirs, family, method)
    device, seen = pl.resolve_device(None), []
    load = runner.load_model

    def watched(*args, **kwargs):
        model, found = load(*args, **kwargs)
        model.to(device)
        _watch(model, device, seen)
        return model, found

    monkeypatch.setattr(runner, "load_model", watched)
    runner.run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    assert seen  # the hooks saw the model's inputs
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["runs_on"]["device"] == str(device)
    assert metrics["runs_on"]["precision"] == "fp32" and metrics["runs_on"]["processes"] == 1


def _factories_without_device(path: Path) -> list[str]:
    """Calls of torch's tensor factories that name no device (they would make CPU tensors)."""
    factories = {"tensor", "zeros", "ones", "full", "arange", "empty", "rand", "randn", "randint", "zeros_like"}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in factories \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch" \
                and not any(k.arg == "device" for k in node.keywords) and node.func.attr != "zeros_like":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} torch.{node.func.attr}")
    return found


# Tensors made on the CPU on purpose, each moved to the device where it is used.
CPU_ON_PURPOSE = {
    "promptlang/runtime/prompt_training.py torch.tensor",  # the special ids the MLM draw avoids (CPU draw)
    "promptlang/runtime/prompt_training.py torch.rand",  # the MLM masks: drawn with the CPU generator, the
    "promptlang/runtime/prompt_training.py torch.randint",  # same for a seed on every device, then moved
    "promptlang/runtime/task.py torch.tensor",  # the targets of the whole training set, moved per batch
}


def test_no_tensor_is_made_off_the_session_s_device_by_accident():
    found = []
    for folder in ("runtime", "stages", "output"):
        for path in sorted((ROOT / "promptlang" / folder).glob("*.py")):
            found += [f for f in _factories_without_device(path)
                      if f"{f.split(':')[0]} {f.split()[-1]}" not in CPU_ON_PURPOSE]
    assert found == []


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_under_autocast_and_is_recorded(precision, tmp_path, model_dirs, monkeypatch):
    spec = write(tmp_path, model_dirs, "masked", "prompt_finetune " + TRAIN)
    device, dtypes = pl.resolve_device(None), []
    load = runner.load_model

    def watched(*args, **kwargs):
        model, found = load(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda mod, args, out: dtypes.append(out.dtype))
        return model, found

    monkeypatch.setattr(runner, "load_model", watched)
    results = runner.run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages", device=str(device),
                         precision=precision)
    assert set(dtypes) == {pl.PRECISIONS[precision]}  # every linear layer ran at the lower precision
    assert results.rows and all(0 <= r.metrics["accuracy"] <= 1 for r in results.rows)
    train = json.loads(next((tmp_path / "stages" / "train" / "d13" / "t" / "s1").glob("*/result.json")).read_text())
    assert all(loss == loss and abs(loss) < 1e3 for loss in train["losses"])  # finite
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["runs_on"]["precision"] == precision
    plan = json.loads((tmp_path / "out" / "plan.json").read_text(encoding="utf-8"))
    assert plan["runs_on"]["precision"] == precision


def test_the_spec_s_precision_is_used_and_the_command_line_overrides_it(tmp_path, model_dirs):
    spec = write(tmp_path, model_dirs, "masked", "zero_shot {}", extra_model="precision bf16")
    runner.run(spec, str(tmp_path / "a"), quiet=True, stages=tmp_path / "stages")
    runner.run(spec, str(tmp_path / "b"), quiet=True, stages=tmp_path / "stages", precision="fp32")
    read = lambda name: json.loads((tmp_path / name / "metrics.json").read_text(encoding="utf-8"))["runs_on"]
    assert (read("a")["precision"], read("b")["precision"]) == ("bf16", "fp32")


def test_fp16_scales_the_loss_and_bf16_does_not():
    cpu = torch.device("cpu")
    assert isinstance(pl.Placement(cpu, "fp16").scaler(), torch.amp.GradScaler)
    assert pl.Placement(cpu, "bf16").scaler() is None and pl.Placement(cpu, "fp32").scaler() is None


def test_fp16_training_steps_through_the_scaler(monkeypatch):
    """fit at fp16 scales the loss before backward and unscales before clipping: the step equals fp32's."""
    from promptlang.language import spec as m
    from promptlang.runtime.training import fit

    def trained(precision: str) -> torch.Tensor:
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 2)
        data = torch.randn(8, 4)
        place = pl.Placement(torch.device("cpu"), precision)
        fit(layer, lambda rows: layer(data[rows]).pow(2).mean(), 8,
            m.Finetune(steps=3, batch_size=4, learning_rate=0.1, max_grad_norm=0.5, select_model="last"), 0,
            placement=place)
        return layer.weight.detach()

    assert torch.allclose(trained("fp16"), trained("fp32"), atol=1e-5)


@pytest.mark.parametrize("family", ["masked", "causal"])
def test_gradient_checkpointing_trains_the_same_model(family, tmp_path, model_dirs):
    """Activations recomputed in the backward pass (the RNG state restored for dropout): the same losses."""
    losses = {}
    for flag in ("false", "true"):
        folder = tmp_path / flag
        folder.mkdir()
        method = "prompt_finetune " + TRAIN.replace("  seeds 1\n", f"  seeds 1\n  gradient_checkpointing {flag}\n")
        spec = write(folder, model_dirs, family, method)
        runner.run(spec, str(folder / "out"), quiet=True, stages=folder / "stages")
        result = next((folder / "stages" / "train" / "d13" / "t" / "s1").glob("*/result.json"))
        losses[flag] = json.loads(result.read_text(encoding="utf-8"))["losses"]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-5)
    assert len(losses["true"]) == 2


def test_gradient_checkpointing_is_switched_on_in_the_model_that_trains():
    from promptlang.runtime.training import _checkpointing

    model, _ = tinymodels.build("masked")
    on = (lambda: model.is_activation_checkpointing) if hasattr(model, "is_activation_checkpointing") \
        else (lambda: model.is_gradient_checkpointing)
    assert not on()
    _checkpointing(torch.nn.ModuleList([model]))  # as prompt-based training wraps it (with a soft prompt)
    assert on()


def test_predict_and_load_take_a_device(tmp_path, model_dirs, capsys):
    import promptlang

    spec = write(tmp_path, model_dirs, "masked", "prompt_finetune " + TRAIN)
    runner.run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    predictor = promptlang.load(tmp_path / "out", device="cpu", precision="bf16")
    assert predictor.session.device == torch.device("cpu") and predictor.session.placement.precision == "bf16"
    assert [p.label for p in predictor.predict(["a fine film"])] in (["negative"], ["positive"])
    capsys.readouterr()
    inputs = tmp_path / "in.tsv"
    inputs.write_text("sentence\na fine film\n", encoding="utf-8")
    assert main(["predict", str(tmp_path / "out"), "--input", str(inputs), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("index\tsentence\tpredicted\t")
    assert main(["predict", str(tmp_path / "out"), "--input", str(inputs), "--device", "cuda:x"]) == 2
    assert capsys.readouterr().err == ("promptlang: error: `--device cuda:x` is not a device: use auto, cpu, cuda, "
                                       "cuda:N or mps\n")


def test_plan_says_where_it_runs(tmp_path, model_dirs, capsys):
    spec = write(tmp_path, model_dirs, "masked", "prompt_finetune " + TRAIN.replace("  seeds 1\n", "  grad_accum 3\n"))
    assert main(["plan", str(spec), "--device", "cpu", "--precision", "bf16"]) == 0
    assert "runs on: cpu, bf16, 1 process; batch 6 per optimizer step; evaluation batch 3\n" in capsys.readouterr().out
