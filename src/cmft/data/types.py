"""The data model: a tracklet (ordered frames of one person in one camera) and a VI-ReID dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Modality = Literal["rgb", "ir"]
Direction = Literal["ir2rgb", "rgb2ir"]

MODALITIES: tuple[Modality, ...] = ("rgb", "ir")
DIRECTIONS: tuple[Direction, ...] = ("ir2rgb", "rgb2ir")
DIRECTION_TITLES: dict[str, str] = {"ir2rgb": "infrared -> visible", "rgb2ir": "visible -> infrared"}


@dataclass(frozen=True)
class Tracklet:
    """One person seen by one camera: frame paths in temporal order plus identity labels.

    ``pid`` is the identity as used by the split: relabelled 0..N-1 for training sets, the
    original dataset id for query/gallery sets.
    """

    paths: tuple[str, ...]
    pid: int
    camid: int
    modality: Modality

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class VIDataset:
    """A cross-modal video re-ID dataset: a training set and the two test sets.

    ``query_ir`` and ``gallery_rgb`` are the infrared->visible protocol sets; the
    visible->infrared protocol swaps them (see :meth:`split`).
    """

    name: str
    root: Path
    train: list[Tracklet]
    query_ir: list[Tracklet]
    gallery_rgb: list[Tracklet]
    train_pid_map: dict[int, int] = field(default_factory=dict)  # original pid -> label
    protocol: str = "hitsz_vcm"  # the evaluation rule (cmft.evaluation.protocols): hitsz_vcm, sysu or regdb

    @property
    def num_train_pids(self) -> int:
        return len({t.pid for t in self.train})

    def train_of(self, modality: Modality) -> list[Tracklet]:
        return [t for t in self.train if t.modality == modality]

    def split(self, direction: Direction = "ir2rgb") -> tuple[list[Tracklet], list[Tracklet]]:
        """(query, gallery) for a protocol direction: ``ir2rgb`` (infrared query) or ``rgb2ir``."""
        if direction == "ir2rgb":
            return self.query_ir, self.gallery_rgb
        if direction == "rgb2ir":
            return self.gallery_rgb, self.query_ir
        raise ValueError(f"unknown direction {direction!r}; choose one of {DIRECTIONS}")
