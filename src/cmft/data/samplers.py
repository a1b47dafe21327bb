"""The cross-modal identity sampler: P identities x K tracklets of each modality per batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class CrossModalIdentitySampler(Sampler[tuple[int, int]]):
    """Yields ``(rgb_index, ir_index)`` pairs of one identity; ``batch_size = P * K`` pairs make a batch.

    A batch holds P distinct identities, K pairs each (RGB tracklet i and IR tracklet i share an
    identity), drawn without replacement when an identity has at least K tracklets of a modality.
    With ``partner`` (RGB index -> IR index of aligned pairs) each RGB tracklet comes with its own IR twin.
    An epoch has ``min(#rgb, #ir) // (P * K)`` batches. Under DistributedDataParallel every rank
    builds the same epoch from ``seed + epoch`` and takes a disjoint share of the batches (rank and
    world size default to the initialised process group's); call :meth:`set_epoch` each epoch.
    """

    def __init__(
        self,
        rgb_labels: Sequence[int],
        ir_labels: Sequence[int],
        num_ids: int,
        num_instances: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        partner: Sequence[int] | None = None,
    ) -> None:
        if num_replicas is None or rank is None:
            dist = torch.distributed
            on = dist.is_available() and dist.is_initialized()
            num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if on else 1)
            rank = rank if rank is not None else (dist.get_rank() if on else 0)
        if num_ids < 1 or num_instances < 1:
            raise ValueError(f"need P >= 1 identities and K >= 1 instances, got P={num_ids}, K={num_instances}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in 0..{num_replicas - 1}")
        self.rgb = self._by_id(rgb_labels)
        self.ir = self._by_id(ir_labels)
        self.ids = sorted(set(self.rgb) & set(self.ir))
        only = sorted(set(self.rgb) ^ set(self.ir))
        if len(self.ids) < num_ids:
            raise ValueError(
                f"a batch needs P={num_ids} identities seen in both modalities, but only {len(self.ids)} are"
                + (f" ({len(only)} ids have one modality only, e.g. {only[:5]})" if only else "")
            )
        self.num_ids, self.num_instances = num_ids, num_instances
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.partner = None if partner is None else list(partner)  # rgb index -> its aligned IR twin
        total = min(len(rgb_labels), len(ir_labels)) // (num_ids * num_instances)
        self.batches_per_rank = total // num_replicas
        if self.batches_per_rank == 0:
            raise ValueError(
                f"the smaller modality has {min(len(rgb_labels), len(ir_labels))} tracklets: not enough for one "
                f"batch of P*K={num_ids * num_instances} per each of {num_replicas} rank(s)"
            )

    @staticmethod
    def _by_id(labels: Sequence[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for i, label in enumerate(labels):
            out[int(label)].append(i)
        return dict(out)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches to yield (same on every rank)."""
        self.epoch = epoch

    def _draw(self, pool: list[int], g: torch.Generator) -> list[int]:
        k = self.num_instances
        if len(pool) >= k:
            pick = torch.randperm(len(pool), generator=g)[:k]
        else:
            pick = torch.randint(len(pool), (k,), generator=g)
        return [pool[i] for i in pick.tolist()]

    def batches(self) -> list[list[tuple[int, int]]]:
        """All batches of the current epoch for this rank."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order: list[int] = []
        out: list[list[tuple[int, int]]] = []
        total = self.batches_per_rank * self.num_replicas
        for b in range(total):
            # identities cycle through fresh permutations, P distinct ones per batch
            ids: list[int] = []
            held: list[int] = []  # drawn twice for one batch (across a reshuffle): kept for the next
            while len(ids) < self.num_ids:
                if not order:
                    order = [self.ids[i] for i in torch.randperm(len(self.ids), generator=g).tolist()]
                pid = order.pop()
                (held if pid in ids else ids).append(pid)
            order.extend(held)
            batch = []
            for pid in ids:
                if self.partner is None:
                    batch.extend(zip(self._draw(self.rgb[pid], g), self._draw(self.ir[pid], g)))
                else:  # aligned pairs: each RGB tracklet with its own IR twin
                    batch.extend((r, self.partner[r]) for r in self._draw(self.rgb[pid], g))
            if b % self.num_replicas == self.rank:
                out.append(batch)
        return out

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for batch in self.batches():
            yield from batch

    def __len__(self) -> int:
        return self.batches_per_rank * self.num_ids * self.num_instances
