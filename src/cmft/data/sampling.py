"""Which frames of a tracklet make a clip of ``seq_len`` frames (the HITSZ-VCM authors' rule).

A tracklet of n frames is cut into ``seq_len`` consecutive chunks of ``ceil(n / seq_len)`` indices
(the index list padded with its last index); test clips take the first index of each chunk,
training clips a uniformly random index of each chunk. Shorter tracklets repeat their last frame.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

SampleMode = Literal["train", "test"]


def _chunks(num_frames: int, seq_len: int) -> torch.Tensor:
    """(seq_len, chunk) matrix of frame indices; row s is the pool of slot s."""
    if num_frames < 1 or seq_len < 1:
        raise ValueError(f"need num_frames >= 1 and seq_len >= 1, got {num_frames} and {seq_len}")
    if num_frames < seq_len:
        idx = torch.arange(seq_len).clamp_(max=num_frames - 1)
        return idx.unsqueeze(1)
    interval = math.ceil(num_frames / seq_len)
    idx = torch.arange(interval * seq_len).clamp_(max=num_frames - 1)
    return idx.view(seq_len, interval)


def sample_frame_indices(
    num_frames: int, seq_len: int, mode: SampleMode = "test", generator: torch.Generator | None = None
) -> list[int]:
    """Frame indices of one clip; ``train`` draws from the global torch RNG unless a generator is given."""
    chunks = _chunks(num_frames, seq_len)
    if mode == "test":
        return chunks[:, 0].tolist()
    if mode == "train":
        pick = torch.randint(chunks.shape[1], (seq_len,), generator=generator)
        return chunks[torch.arange(seq_len), pick].tolist()
    raise ValueError(f"unknown sampling mode {mode!r}; choose 'train' or 'test'")


def frame_pools(num_frames: int, seq_len: int) -> list[list[int]]:
    """The distinct indices each slot of a training clip can take (for checks and docs)."""
    return [sorted(set(row)) for row in _chunks(num_frames, seq_len).tolist()]
