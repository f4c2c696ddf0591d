"""The training loop: one explicit loop — forward, loss, backward, clip, step, log — read top to bottom."""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from promptlang.language import spec as m
from promptlang.methods import method_of
from promptlang.runtime.errors import RunError
from promptlang.runtime.placement import Placement
from promptlang.runtime.progress import as_progress


@dataclass
class History:
    """What happened during training: the loss at each optimizer step and the dev score at each epoch."""

    losses: list[float] = field(default_factory=list)
    dev: list[float] = field(default_factory=list)
    best_epoch: int | None = None


def total_steps(settings: m.Training, n_examples: int) -> int:
    """Optimizer steps: `steps`, or `epochs` (default 1) passes over the examples."""
    if settings.steps:
        return settings.steps
    per_step = settings.batch_size * settings.grad_accum
    return (settings.epochs or 1) * max(1, math.ceil(n_examples / per_step))


def is_norm(module: torch.nn.Module) -> bool:
    """A normalisation layer: LayerNorm, GroupNorm, batch norm, or a model's own RMSNorm-like class
    (Llama's `LlamaRMSNorm`, T5's `T5LayerNorm`, Gemma's `GemmaRMSNorm`: class names ending in `Norm`)."""
    kinds = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase)
    return isinstance(module, kinds) or type(module).__name__.endswith("Norm")


def decay_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The trainable parameters in two optimizer groups: with weight decay, and without it for
    biases (names containing `bias`) and normalisation layers' weights, as BERT and Hugging Face do."""
    exempt = {id(p) for sub in module.modules() if is_norm(sub) for p in sub.parameters(recurse=False)}
    decay, plain = [], []
    for name, parameter in module.named_parameters():
        if parameter.requires_grad:
            skip = id(parameter) in exempt or "bias" in name
            (plain if skip else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def optimizer_for(settings: m.Training, module: torch.nn.Module) -> torch.optim.Optimizer:
    """The spec's optimizer over `module`'s trainable parameters (weight decay as `decay_groups` says)."""
    groups = decay_groups(module, settings.weight_decay)
    kinds = {m.Optimizer.sgd: torch.optim.SGD, m.Optimizer.adam: torch.optim.Adam}
    return kinds.get(settings.optimizer, torch.optim.AdamW)(groups, lr=settings.learning_rate)


def hinge_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """PET's loss for multi-token label words: Σ over wrong labels of max(0, 1 − s_gold + s_wrong),
    averaged over the batch; `scores` (B, C) are the labels' sequence log-scores (sums of token
    log-probabilities), which are no distribution over the labels."""
    gold = scores.gather(1, targets.unsqueeze(1))  # (B, 1)
    margins = (1 - gold + scores).clamp(min=0)  # (B, C)
    wrong = torch.ones_like(margins).scatter(1, targets.unsqueeze(1), 0.0)  # (B, C): 0 at the gold label
    return (margins * wrong).sum(dim=1).mean()


def multi_token_loss(method) -> m.MultiTokenLoss:
    """The label loss for patterns with multi-token words: the spec's, else the method's default (hinge
    for PET and iPET, as PET's code trains them; cross-entropy for prompt_finetune)."""
    if method.loss.multi_token is not None:
        return method.loss.multi_token
    return method_of(method.kind).multi_token_loss


def schedule_for(settings: m.Training, optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup` of the steps, then linear decay / constant / cosine."""
    warm = int(settings.warmup * steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, steps - warm)
        if settings.schedule is m.Schedule.constant:
            return 1.0
        if settings.schedule is m.Schedule.cosine:
            return 0.5 * (1 + math.cos(math.pi * progress))
        return max(0.0, 1 - progress)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(module: torch.nn.Module, loss_of: Callable[[list[int]], torch.Tensor], n_examples: int,
        settings: m.Training, seed: int, evaluate: Callable[[], float] | None = None,
        progress: Callable[[int, int, float], None] | None = None, where: tuple = ("method",),
        placement: Placement | None = None) -> History:
    """Train `module` on examples 0..n-1, keeping the last state or (`select_model dev`) the best on dev.

    With several processes (`placement.world` > 1) every process draws the same batches, computes the
    loss of its share of each batch, and the gradients are summed before each step: the optimizer
    steps, the schedule and the effective batch are those of one process. At fp16 a gradient scaler
    scales the loss (a step whose gradients overflowed is skipped, as `GradScaler` does).

    Args:
        module: everything that trains (its parameters with requires_grad).
        loss_of: the mean loss of a batch of example indices.
        n_examples: how many training examples there are.
        settings: optimizer, schedule, batch size, steps or epochs, clipping.
        seed: shuffles the batches.
        evaluate: the dev score after each epoch (higher is better); None, or `select_model last`:
            keep the last state and evaluate nothing.
        progress: called after each optimizer step with (step, total, loss).
        where: the spec path of `settings` (for locating an error).
        placement: the device, precision and process group (one CPU process when None).

    Raises:
        ValueError: there are no training examples (no batch would ever make a step).
        RunError: the loss became infinite or NaN (located at the learning rate).
    """
    if n_examples < 1:
        raise ValueError("no training examples")
    rng = random.Random(seed)
    steps = total_steps(settings, n_examples)
    stepper = _Stepper(module, settings, placement or Placement(), steps)
    if settings.select_model is m.ModelSelection.last:
        evaluate = None  # a fixed number of steps, as in PET: the dev data is not looked at
    history, kept = History(), _Best()
    step, epoch = 0, 0
    per_epoch = math.ceil(math.ceil(n_examples / settings.batch_size) / settings.grad_accum)
    every = max(1, math.ceil(math.ceil(steps / max(per_epoch, 1)) / 10))  # dev at most about ten times
    module.train()
    while step < steps:
        order = list(range(n_examples))
        rng.shuffle(order)
        batches = [order[i : i + settings.batch_size] for i in range(0, n_examples, settings.batch_size)]
        for start in range(0, len(batches), settings.grad_accum):
            total = stepper.step(loss_of, batches[start : start + settings.grad_accum])
            if not math.isfinite(total):
                raise diverged(total, step + 1, steps, settings, where)
            step += 1
            history.losses.append(total)
            if progress:
                progress(step, steps, total)
            if step == steps:
                break
        epoch += 1
        if evaluate is not None and (epoch % every == 0 or step == steps):
            kept.consider(module, evaluate, epoch, history)
    module.eval()
    if kept.state is not None:
        module.load_state_dict(kept.state)
    return history


class _Stepper:
    """The optimizer (built once), its schedule and fp16's gradient scaler: one optimizer step per group of
    batches, after the processes' gradients are summed."""

    def __init__(self, module: torch.nn.Module, settings: m.Training, placement: Placement, steps: int):
        self.module, self.settings, self.placement = module, settings, placement
        self.optimizer = optimizer_for(settings, module)
        self.schedule = schedule_for(settings, self.optimizer, steps)
        self.scaler = placement.scaler()
        if getattr(settings, "gradient_checkpointing", False):
            _checkpointing(module)

    def step(self, loss_of: Callable[[list[int]], torch.Tensor], group: list[list[int]]) -> float:
        """Backpropagate a group of batches and step (no step when the loss is not finite); its mean loss."""
        total = _accumulate(loss_of, group, self.placement, self.scaler)
        if math.isfinite(total):
            _update(self.module, self.optimizer, self.schedule, self.settings, self.placement, self.scaler)
        return total


def _accumulate(loss_of: Callable[[list[int]], torch.Tensor], group: list[list[int]], placement: Placement,
                scaler) -> float:
    """Backpropagate a group of batches (gradient accumulation), each part weighted by its share of the
    group's examples; this process takes its share of each batch. Returns the group's mean loss (over
    every process)."""
    total, size = 0.0, sum(len(b) for b in group)
    for batch in group:
        part = placement.mine(batch)
        if not part:
            continue
        loss = loss_of(part) * len(part) / size
        (scaler.scale(loss) if scaler else loss).backward()
        total += float(loss.detach())
    return placement.all_sum(total)


def _update(module: torch.nn.Module, optimizer, schedule, settings: m.Training, placement: Placement,
            scaler=None) -> None:
    """One optimizer step: sum the processes' gradients, clip them (`max_grad_norm`), step, advance the
    schedule, clear. The schedule advances once per optimizer step at any process count."""
    parameters = [p for p in module.parameters() if p.requires_grad]
    placement.all_reduce_grads(parameters)
    if scaler is not None:
        scaler.unscale_(optimizer)
    if settings.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)


def _checkpointing(module: torch.nn.Module) -> None:
    """Gradient checkpointing in every transformers model inside `module` (activations recomputed in
    the backward pass: less memory, about a third more compute)."""
    for sub in module.modules():
        if not getattr(sub, "supports_gradient_checkpointing", False):
            continue
        if hasattr(sub, "activation_checkpointing_enable"):  # transformers ≥ 5.x's name for it
            sub.activation_checkpointing_enable({"use_reentrant": False})
        else:
            sub.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return


@dataclass
class _Best:
    """The state with the best dev score so far (`select_model dev`)."""

    score: float = -math.inf
    state: dict | None = None

    def consider(self, module: torch.nn.Module, evaluate: Callable[[], float], epoch: int, history: History) -> None:
        module.eval()
        score = evaluate()
        module.train()
        history.dev.append(score)
        if score > self.score:
            self.score, history.best_epoch = score, epoch
            self.state = copy.deepcopy({k: v.detach().clone() for k, v in module.state_dict().items()})


def diverged(loss: float, step: int, steps: int, settings: m.Training, where: tuple) -> Exception:
    """The error for a loss that is no longer a number: most often a learning rate too high for the model."""
    clip = "" if settings.max_grad_norm else ", or clip gradients with `max_grad_norm 1.0`"
    return RunError(f"training diverged: the loss became {loss} at optimizer step {step} of {steps}",
                    (*where, "learning_rate"),
                    f"lower `learning_rate` (it is {settings.learning_rate:g}){clip}")


def progress(log: Callable[[str], None]) -> Callable[[int, int, float], None]:
    """A `fit` progress callback: a bar over the optimizer steps with the loss (about ten plain lines
    with the step, the loss and the time left)."""
    started, bars = time.time(), []

    def report(step: int, steps: int, loss: float) -> None:
        if not bars:
            bars.append(as_progress(log).bar(steps, "step"))
            bars[0].started = started
        bars[0].update(step, loss)
    return report
