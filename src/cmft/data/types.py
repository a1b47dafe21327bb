"""The data model: a tracklet (ordered frames of one person in one camera) and a VI-ReID dataset."""

from __future__ import annotations

import warnings
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

    ``test_ir`` and ``test_rgb`` are the infrared and the visible test tracklets. Each direction uses
    both: infrared->visible queries ``test_ir`` against ``test_rgb``, visible->infrared the reverse
    (see :meth:`split`).
    """

    name: str
    root: Path
    train: list[Tracklet]
    test_ir: list[Tracklet]
    test_rgb: list[Tracklet]
    train_pid_map: dict[int, int] = field(default_factory=dict)  # original pid -> label
    protocol: str = "hitsz_vcm"  # the evaluation rule (cmft.evaluation.protocols): hitsz_vcm, sysu or regdb

    @property
    def query_ir(self) -> list[Tracklet]:
        """Deprecated name of :attr:`test_ir` (it is the query set of one direction only); kept for one release."""
        warnings.warn("VIDataset.query_ir is now VIDataset.test_ir", DeprecationWarning, stacklevel=2)
        return self.test_ir

    @property
    def gallery_rgb(self) -> list[Tracklet]:
        """Deprecated name of :attr:`test_rgb`; kept for one release."""
        warnings.warn("VIDataset.gallery_rgb is now VIDataset.test_rgb", DeprecationWarning, stacklevel=2)
        return self.test_rgb

    @property
    def num_train_pids(self) -> int:
        return len({t.pid for t in self.train})

    def train_of(self, modality: Modality) -> list[Tracklet]:
        return [t for t in self.train if t.modality == modality]

    def split(self, direction: Direction = "ir2rgb") -> tuple[list[Tracklet], list[Tracklet]]:
        """(query, gallery) for a protocol direction: ``ir2rgb`` (infrared query) or ``rgb2ir``."""
        if direction == "ir2rgb":
            return self.test_ir, self.test_rgb
        if direction == "rgb2ir":
            return self.test_rgb, self.test_ir
        raise ValueError(f"unknown direction {direction!r}; choose one of {DIRECTIONS}")
