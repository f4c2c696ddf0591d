"""The collectives of `runtime/placement.py` on two real gloo processes (spawned here, no launcher): rows
gathered back whole, gradients summed, a value shared from the first process, work dealt out by rank,
and nothing collective inside `alone()`; in one process every collective is the identity."""

from __future__ import annotations

import os
import socket

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from promptlang.runtime.placement import Placement  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="torch without gloo")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    place = Placement(torch.device("cpu"), "fp32", rank, 2)
    try:
        mine = place.mine(list(range(5)))
        rows = place.gather_rows({i: f"row {i} by {rank}" for i in mine})
        layer = torch.nn.Linear(2, 1, bias=False)
        layer.weight.grad = torch.full((1, 2), float(rank + 1))
        frozen = torch.nn.Parameter(torch.zeros(3))  # no gradient on this process: counts as zeros
        place.all_reduce_grads([layer.weight, frozen])
        shared = place.share({"from": rank})
        total = place.all_sum(rank + 0.5)
        with place.alone():
            alone = (place.world, place.mine([1, 2, 3]), place.gather_rows({0: rank}), place.all_sum(1.0))
        results[rank] = {"mine": mine, "rows": rows, "grad": layer.weight.grad.tolist(),
                         "frozen": frozen.grad.tolist(), "shared": shared, "total": total, "alone": alone}
    finally:
        dist.destroy_process_group()


def test_collectives_on_two_gloo_processes():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(_port(), results), nprocs=2, join=True)
        first, second = results[0], results[1]
    assert (first["mine"], second["mine"]) == ([0, 2, 4], [1, 3])
    assert first["rows"] == second["rows"] == {0: "row 0 by 0", 1: "row 1 by 1", 2: "row 2 by 0",
                                               3: "row 3 by 1", 4: "row 4 by 0"}
    assert first["grad"] == second["grad"] == [[3.0, 3.0]]  # 1 + 2
    assert first["frozen"] == second["frozen"] == [0.0, 0.0, 0.0]
    assert first["shared"] == second["shared"] == {"from": 0}
    assert first["total"] == second["total"] == 2.0  # 0.5 + 1.5
    assert first["alone"] == (1, [1, 2, 3], {0: 0}, 1.0) and second["alone"] == (1, [1, 2, 3], {0: 1}, 1.0)


def test_in_one_process_every_collective_is_the_identity():
    place = Placement(torch.device("cpu"))
    weight = torch.nn.Parameter(torch.ones(2))
    weight.grad = torch.tensor([1.0, 2.0])
    place.all_reduce_grads([weight])
    place.barrier()
    assert weight.grad.tolist() == [1.0, 2.0]
    assert place.mine([1, 2]) == [1, 2] and place.gather_rows({3: "x"}) == {3: "x"}
    assert place.share(7) == 7 and place.all_sum(1.5) == 1.5 and place.main and place.world == 1
