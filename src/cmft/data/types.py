"""The data model: a tracklet (ordered frames of one person in one camera) and a VI-ReID dataset."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Modality = Literal["rgb", "ir"]
Direction = Literal["ir2rgb", "rgb2ir", "ir2ir", "rgb2rgb"]

MODALITIES: tuple[Modality, ...] = ("rgb", "ir")
DIRECTIONS: tuple[Direction, ...] = ("ir2rgb", "rgb2ir")
DIRECTION_TITLES: dict[str, str] = {"ir2rgb": "infrared -> visible", "rgb2ir": "visible -> infrared",
                                     "ir2ir": "infrared -> infrared", "rgb2rgb": "visible -> visible",
                                     "fused": "RGB+IR pair -> RGB+IR pair (fused)"}


def direction_modalities(direction: str) -> tuple[Modality, Modality]:
    """``"ir2rgb"`` -> ``("ir", "rgb")``: the query and gallery modalities of a direction."""
    q, sep, g = direction.partition("2")
    if not sep or q not in MODALITIES or g not in MODALITIES:
        raise ValueError(f"unknown direction {direction!r}; choose one of ir2rgb, rgb2ir, ir2ir, rgb2rgb")
    return q, g  # type: ignore[return-value]


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

    Datasets whose query and gallery are separate sets holding both modalities (BUPTCampus) give
    ``num_query``: the first ``num_query["ir"]`` tracklets of ``test_ir`` (and ``num_query["rgb"]`` of
    ``test_rgb``) are queries, the rest the gallery. ``pairs`` lists ``(rgb index, ir index)`` of training
    tracklets that are one moment seen by both sensors, frame for frame (aligned RGB-IR cameras);
    ``auxiliary`` holds extra training tracklets a dataset ships beside its training set. ``test_pairs``
    (``"query"``, ``"gallery"``) lists the test moments seen by both sensors as aligned ``(rgb, ir)``
    tracklets, for retrieval with the fused embedding of a pair.
    """

    name: str
    root: Path
    train: list[Tracklet]
    test_ir: list[Tracklet]
    test_rgb: list[Tracklet]
    train_pid_map: dict[int, int] = field(default_factory=dict)  # original pid -> label
    protocol: str = "hitsz_vcm"  # the evaluation rule (cmft.evaluation.protocols): hitsz_vcm, sysu or regdb
    num_query: dict[str, int] | None = None  # query tracklets at the head of test_ir / test_rgb (else all)
    pairs: list[tuple[int, int]] = field(default_factory=list)  # aligned (rgb, ir) training tracklets
    auxiliary: list[Tracklet] = field(default_factory=list)
    test_pairs: dict[str, list[tuple[Tracklet, Tracklet]]] = field(default_factory=dict)  # aligned (rgb, ir) moments

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
        """(query, gallery) for a protocol direction: ``ir2rgb`` (infrared query), ``rgb2ir``, or, for datasets
        with separate query and gallery sets, the same-modality ``ir2ir`` / ``rgb2rgb``."""
        sets = {"ir": self.test_ir, "rgb": self.test_rgb}
        q_mod, g_mod = direction_modalities(direction)
        if self.num_query is None:
            if q_mod == g_mod:
                raise ValueError(f"{self.name} has no separate query and gallery sets: {direction!r} is not defined")
            return sets[q_mod], sets[g_mod]
        return sets[q_mod][: self.num_query[q_mod]], sets[g_mod][self.num_query[g_mod]:]
