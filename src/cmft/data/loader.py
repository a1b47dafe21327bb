"""Datasets and DataLoaders that turn tracklets into clip batches (decoding in worker processes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from cmft.config import Config, DataConfig, config_from_dict
from cmft.data.preprocess import read_frames
from cmft.data.sampling import SampleMode, sample_frame_indices
from cmft.data.samplers import CrossModalIdentitySampler
from cmft.data.transforms import ClipAugment, build_clip_transform
from cmft.data.types import Modality, Tracklet, VIDataset

ClipTransform = Callable[[torch.Tensor], torch.Tensor]


class ClipDataset(Dataset):
    """One clip per tracklet: ``{"clip": (T, 3, H, W), "pid", "camid", "index"}``."""

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        seq_len: int,
        height: int,
        width: int,
        mode: SampleMode = "test",
        transform: ClipTransform | None = None,
    ) -> None:
        self.tracklets = list(tracklets)
        self.seq_len, self.height, self.width, self.mode = seq_len, height, width, mode
        # the un-augmented transform is the same for both modalities
        self.transform = transform or build_clip_transform("rgb", False, height, width)

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, index: int, frames: Sequence[int] | None = None) -> dict:
        """Tracklet ``index`` as a clip; ``frames`` fixes which frames (else drawn as ``mode`` samples them)."""
        t = self.tracklets[index]
        idx = sample_frame_indices(len(t), self.seq_len, self.mode) if frames is None else frames
        clip = self.transform(read_frames([t.paths[i] for i in idx], self.height, self.width))
        return {"clip": clip, "pid": t.pid, "camid": t.camid, "index": index}


class CrossModalPairDataset(Dataset):
    """Training pairs indexed by ``(rgb_index, ir_index)`` of one identity (see the sampler). With ``aligned``
    the two tracklets are one moment seen by both sensors (BUPTCampus pairs) and their clips take the same
    frame indices."""

    def __init__(
        self,
        rgb: Sequence[Tracklet],
        ir: Sequence[Tracklet],
        seq_len: int,
        height: int,
        width: int,
        augment: ClipAugment = ClipAugment(),
        aligned: bool = False,
    ) -> None:
        self.rgb = ClipDataset(rgb, seq_len, height, width, "train", build_clip_transform("rgb", True, height, width, augment))
        self.ir = ClipDataset(ir, seq_len, height, width, "train", build_clip_transform("ir", True, height, width, augment))
        self.aligned, self.seq_len = aligned, seq_len

    def __len__(self) -> int:
        return min(len(self.rgb), len(self.ir))

    def __getitem__(self, pair: tuple[int, int]) -> dict:
        if self.aligned:
            frames = sample_frame_indices(len(self.rgb.tracklets[pair[0]]), self.seq_len, "train")
            r, i = self.rgb.__getitem__(pair[0], frames), self.ir.__getitem__(pair[1], frames)
        else:
            r, i = self.rgb[pair[0]], self.ir[pair[1]]
        if r["pid"] != i["pid"]:
            raise ValueError(f"pair {pair} mixes identities {r['pid']} (RGB) and {i['pid']} (IR)")
        return {"rgb": r["clip"], "ir": i["clip"], "label": r["pid"], "rgb_camid": r["camid"], "ir_camid": i["camid"]}


def _worker_kwargs(workers: int) -> dict:
    # fresh workers each epoch: their seeds then follow the main RNG, so a resumed run draws the same frames
    return {"num_workers": workers, "pin_memory": torch.cuda.is_available()}


def aligned_partners(dataset: VIDataset) -> list[int] | None:
    """For a dataset whose training tracklets come in aligned pairs (:attr:`VIDataset.pairs`): the position in
    ``train_of("ir")`` of each ``train_of("rgb")`` tracklet's IR twin; ``None`` when there are no pairs."""
    if not dataset.pairs:
        return None
    position = {m: {k: n for n, k in enumerate(i for i, t in enumerate(dataset.train) if t.modality == m)} for m in ("rgb", "ir")}
    partner: list[int | None] = [None] * len(position["rgb"])
    for r, i in dataset.pairs:
        partner[position["rgb"][r]] = position["ir"][i]
    if any(p is None for p in partner):
        raise ValueError(f"{dataset.name}: {partner.count(None)} RGB training tracklets have no IR twin in dataset.pairs")
    return partner  # type: ignore[return-value]


def build_train_loader(
    dataset: VIDataset,
    data: DataConfig | None = None,
    seed: int = 0,
    num_replicas: int | None = None,
    rank: int | None = None,
    augment: ClipAugment | None = None,
) -> DataLoader:
    """Batches ``{"rgb": (P*K, T, 3, H, W), "ir": ..., "label": (P*K,)}`` from the P x K cross-modal sampler.

    ``data`` (the config's data section) gives the clip length, frame size, P (``num_ids``), K
    (``num_instances``), workers and the RGB levers (``gray_p``, ``channel_p``; ``augment`` replaces the
    whole augmentation). ``loader.sampler.set_epoch(e)`` must be called each epoch (also under DDP, where
    ``rank`` and ``num_replicas`` give each process its share).
    """
    d = data or DataConfig()
    augment = augment or ClipAugment(gray_p=d.gray_p, channel_p=d.channel_p)
    rgb, ir = dataset.train_of("rgb"), dataset.train_of("ir")
    partner = aligned_partners(dataset)
    pairs = CrossModalPairDataset(rgb, ir, d.seq_len, d.height, d.width, augment, aligned=partner is not None)
    sampler = CrossModalIdentitySampler(
        [t.pid for t in rgb], [t.pid for t in ir], d.num_ids, d.num_instances, seed, num_replicas, rank, partner
    )
    return DataLoader(pairs, batch_size=d.num_ids * d.num_instances, sampler=sampler, drop_last=True, **_worker_kwargs(d.workers))


@dataclass(frozen=True)
class ClipSpec:
    """How test clips are made: frames per clip, frame size, batch, loader workers, flip averaging."""

    seq_len: int = 6
    height: int = 256
    width: int = 128
    batch_size: int = 32
    workers: int = 2
    flip: bool = False

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> ClipSpec:
        """The test clips of a run: ``eval.seq_len``, the training frame size, ``eval.batch_size``, ``data.workers``,
        ``eval.flip`` of a :class:`~cmft.config.Config` or of the config dict a checkpoint holds; keyword
        arguments replace fields (``None`` keeps the config's value)."""
        if not isinstance(cfg, Config):
            cfg = config_from_dict(cfg)
        spec = cls(cfg.eval.seq_len, cfg.data.height, cfg.data.width, cfg.eval.batch_size, cfg.data.workers, cfg.eval.flip)
        return dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v is not None})


def build_test_loader(tracklets: Sequence[Tracklet], spec: ClipSpec = ClipSpec()) -> DataLoader:
    """Test clips (first frame of each chunk) of one modality, in tracklet order, as ``spec`` makes them."""
    mods: set[Modality] = {t.modality for t in tracklets}
    if len(mods) != 1:
        raise ValueError(f"a test loader takes tracklets of one modality, got {sorted(mods)}")
    ds = ClipDataset(tracklets, spec.seq_len, spec.height, spec.width, "test")
    return DataLoader(ds, batch_size=spec.batch_size, shuffle=False, **_worker_kwargs(spec.workers))
