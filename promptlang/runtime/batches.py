"""Batches of token ids as tensors on a model's device (every scorer pads with these)."""

from __future__ import annotations

import torch


def pad(sequences: list[list[int]], pad_id: int, device: torch.device | str | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence, on `device` (the CPU when None).

    Returns:
        ids (B, L) and attention mask (B, L).
    """
    length = max(len(s) for s in sequences)
    rows = [s + [pad_id] * (length - len(s)) for s in sequences]
    ones = [[1] * len(s) + [0] * (length - len(s)) for s in sequences]
    return (torch.tensor(rows, dtype=torch.long, device=device),
            torch.tensor(ones, dtype=torch.long, device=device))


def device_of(model) -> torch.device:
    """The device a model's weights are on: where the inputs it is given must be (the CPU for a model
    without parameters)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")
