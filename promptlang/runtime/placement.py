"""Where a run's tensors live and how its processes work together: the device, the precision, and the
process group that `torchrun` or `accelerate launch` started (one process when neither did).

The session owns one `Placement`; every tensor a stage creates is created on `placement.device`,
forward passes run under `placement.autocast()`, and the collectives below (`gather_rows`,
`all_reduce_grads`, `barrier`) do nothing in a single process. A stage that one process computes
on its own (`alone()`) sees a world of one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Iterator

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PlacementError(Exception):
    """A device or precision that this machine cannot give (a command-line mistake: exit 2)."""


def launched_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as `torchrun` / `accelerate launch` set them; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, 0
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def default_device() -> str:
    """The device when none is named: `$PROMPTLANG_DEVICE`, else `auto`."""
    return os.environ.get("PROMPTLANG_DEVICE", "").strip() or "auto"


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """`auto` (a GPU when there is one: CUDA, else Apple's MPS, else the CPU), `cpu`, `cuda`, `cuda:N`, `mps`;
    None: `default_device()`.

    Several processes on one machine each take the GPU of their local rank (`cuda` / `auto`).

    Raises:
        PlacementError: the device is not one of these, or this machine has no such device.
    """
    name = (name or default_device()).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise PlacementError("`--device mps` asks for Apple's GPU, but this machine has none; "
                                 "use `--device cpu` or `--device auto`")
        return torch.device("mps")
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise PlacementError(f"`--device {name}` is not a device: use auto, cpu, cuda, cuda:N or mps")
    if not torch.cuda.is_available():
        raise PlacementError(f"`--device {name}` asks for a CUDA GPU, but torch sees none on this machine "
                             f"(torch {torch.__version__}); use `--device cpu` or `--device auto`")
    number = int(index) if index else local_rank % torch.cuda.device_count()
    if number >= torch.cuda.device_count():
        raise PlacementError(f"`--device {name}`: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered 0 to {torch.cuda.device_count() - 1}")
    return torch.device("cuda", number)


def check_precision(precision: str, device: torch.device) -> None:
    """Raises PlacementError for a precision the device cannot run (bf16 on a GPU without it)."""
    if precision not in PRECISIONS:
        raise PlacementError(f"`--precision {precision}` is not a precision: use fp32, bf16 or fp16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PlacementError(f"`--precision bf16`: {torch.cuda.get_device_name(device)} has no bfloat16; "
                             "use `--precision fp16` (with a gradient scaler) or fp32")


@dataclass
class Placement:
    """A device, a precision and this process's place among the run's processes."""

    device: torch.device = field(default_factory=lambda: resolve_device(None))
    precision: str | None = "fp32"  # None only in a `planned` placement: the spec's
    rank: int = 0
    processes: int = 1
    solo: bool = False  # inside `alone()`: this process computes a stage by itself

    @property
    def world(self) -> int:
        """How many processes share the current stage (1 inside `alone()`)."""
        return 1 if self.solo else self.processes

    @property
    def main(self) -> bool:
        """Whether this is the process that writes the output directory (rank 0)."""
        return self.rank == 0

    def describe(self) -> dict:
        """What a run's output records about where it ran."""
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type
        return {"device": str(self.device), "device_name": name, "precision": self.precision,
                "processes": self.processes}

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for forward passes (nothing at fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def scaler(self) -> "torch.amp.GradScaler | None":
        """fp16's gradient scaler (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        """This process computes a stage by itself: no collectives until the block ends."""
        before, self.solo = self.solo, True
        try:
            yield
        finally:
            self.solo = before

    # ------------------------------------------------------------ collectives

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def share(self, value, source: int = 0):
        """A picklable value from process `source` to every process (only promptlang's own values:
        the processes are one run of one user's command)."""
        if self.world <= 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=source)
        return box[0]

    def gather_rows(self, mine: dict[int, "object"]) -> dict[int, "object"]:
        """Every process's {row index: result}, merged (each row is computed by one process)."""
        if self.world <= 1:
            return mine
        parts: list = [None] * self.world
        torch.distributed.all_gather_object(parts, mine)
        merged: dict = {}
        for part in parts:
            merged.update(part)
        return merged

    def mine(self, items: list) -> list:
        """This process's share of some work items: every `world`-th one, from its rank."""
        return items[self.rank :: self.world] if self.world > 1 else items

    def all_reduce_grads(self, parameters: list[torch.nn.Parameter]) -> None:
        """Sum the gradients over the processes (each process's loss is already weighted by its share
        of the batch), in one flat buffer; a parameter with no gradient here counts as zeros."""
        if self.world <= 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p, g in zip(parameters, grads):
            p.grad = flat[offset : offset + g.numel()].view_as(p).clone()
            offset += g.numel()

    def all_sum(self, value: float) -> float:
        """A number summed over the processes."""
        if self.world <= 1:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(total)
        return float(total.item())


def start(device: str | None = None, precision: str = "fp32") -> Placement:
    """This process's placement, joining the process group when a launcher started several processes
    (NCCL between GPUs, gloo between CPUs).

    Raises:
        PlacementError: the device or the precision cannot be had here.
    """
    rank, world, local = launched_world()
    where = resolve_device(device, local)
    check_precision(precision, where)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if where.type == "cuda" else "gloo"
        if where.type == "cuda":
            torch.cuda.set_device(where)
        torch.distributed.init_process_group(backend)
    return Placement(where, precision, rank, world)


def planned(device: str | None = None, precision: str | None = None) -> Placement:
    """Where a run started the same way would run, for `promptlang plan`: nothing is joined or loaded
    (`precision` None: the spec's).

    Raises:
        PlacementError: the device or the precision cannot be had here.
    """
    rank, world, local = launched_world()
    where = resolve_device(device, local)
    if precision is not None:
        check_precision(precision, where)
    return Placement(where, precision, rank, world)


def stop(placement: Placement) -> None:
    """Leave the process group at the end of a run."""
    if placement.processes > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
