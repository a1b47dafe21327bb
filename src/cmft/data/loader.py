"""Datasets and DataLoaders that turn tracklets into clip batches (decoding in worker processes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

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

    def __getitem__(self, index: int) -> dict:
        t = self.tracklets[index]
        idx = sample_frame_indices(len(t), self.seq_len, self.mode)
        clip = self.transform(read_frames([t.paths[i] for i in idx], self.height, self.width))
        return {"clip": clip, "pid": t.pid, "camid": t.camid, "index": index}


class CrossModalPairDataset(Dataset):
    """Training pairs indexed by ``(rgb_index, ir_index)`` of one identity (see the sampler)."""

    def __init__(
        self,
        rgb: Sequence[Tracklet],
        ir: Sequence[Tracklet],
        seq_len: int,
        height: int,
        width: int,
        augment: ClipAugment = ClipAugment(),
    ) -> None:
        self.rgb = ClipDataset(rgb, seq_len, height, width, "train", build_clip_transform("rgb", True, height, width, augment))
        self.ir = ClipDataset(ir, seq_len, height, width, "train", build_clip_transform("ir", True, height, width, augment))

    def __len__(self) -> int:
        return min(len(self.rgb), len(self.ir))

    def __getitem__(self, pair: tuple[int, int]) -> dict:
        r, i = self.rgb[pair[0]], self.ir[pair[1]]
        if r["pid"] != i["pid"]:
            raise ValueError(f"pair {pair} mixes identities {r['pid']} (RGB) and {i['pid']} (IR)")
        return {"rgb": r["clip"], "ir": i["clip"], "label": r["pid"], "rgb_camid": r["camid"], "ir_camid": i["camid"]}


def _worker_kwargs(workers: int) -> dict:
    # fresh workers each epoch: their seeds then follow the main RNG, so a resumed run draws the same frames
    return {"num_workers": workers, "pin_memory": torch.cuda.is_available()}


def build_train_loader(
    dataset: VIDataset,
    seq_len: int = 6,
    height: int = 256,
    width: int = 128,
    num_ids: int = 8,
    num_instances: int = 4,
    workers: int = 2,
    seed: int = 0,
    num_replicas: int | None = None,
    rank: int | None = None,
    augment: ClipAugment = ClipAugment(),
) -> DataLoader:
    """Batches ``{"rgb": (P*K, T, 3, H, W), "ir": ..., "label": (P*K,)}`` from the P x K cross-modal sampler.

    ``loader.sampler.set_epoch(e)`` must be called each epoch (also under DDP, where ``rank`` and
    ``num_replicas`` give each process its share).
    """
    rgb, ir = dataset.train_of("rgb"), dataset.train_of("ir")
    pairs = CrossModalPairDataset(rgb, ir, seq_len, height, width, augment)
    sampler = CrossModalIdentitySampler(
        [t.pid for t in rgb], [t.pid for t in ir], num_ids, num_instances, seed, num_replicas, rank
    )
    return DataLoader(pairs, batch_size=num_ids * num_instances, sampler=sampler, drop_last=True, **_worker_kwargs(workers))


def build_test_loader(
    tracklets: Sequence[Tracklet],
    seq_len: int = 6,
    height: int = 256,
    width: int = 128,
    batch_size: int = 32,
    workers: int = 2,
) -> DataLoader:
    """Test clips (first frame of each chunk) of one modality, in tracklet order."""
    mods: set[Modality] = {t.modality for t in tracklets}
    if len(mods) != 1:
        raise ValueError(f"a test loader takes tracklets of one modality, got {sorted(mods)}")
    ds = ClipDataset(tracklets, seq_len, height, width, "test")
    return DataLoader(ds, batch_size=batch_size, shuffle=False, **_worker_kwargs(workers))
