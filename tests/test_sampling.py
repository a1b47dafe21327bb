"""Frame sampling against the reference loader, and the P x K cross-modal sampler (also sharded)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from cmft.data import CrossModalIdentitySampler, frame_pools, sample_frame_indices


def test_test_sampling_matches_reference(golden: Path) -> None:
    ref = json.loads((golden / "vcm_data_golden.json").read_text())["frame_sampling"]
    for n, expected in ref["video_test"].items():
        assert sample_frame_indices(int(n), ref["seq_len"], "test") == expected, n


def test_train_pools_match_reference(golden: Path) -> None:
    ref = json.loads((golden / "vcm_data_golden.json").read_text())["frame_sampling"]
    seq_len = ref["seq_len"]
    g = torch.Generator().manual_seed(0)
    for n, pools in ref["video_train_pools"].items():
        assert frame_pools(int(n), seq_len) == pools, n
        seen = [set() for _ in range(seq_len)]
        for _ in range(300):
            draw = sample_frame_indices(int(n), seq_len, "train", generator=g)
            for s, i in enumerate(draw):
                seen[s].add(i)
        assert [sorted(x) for x in seen] == pools, n  # every draw in its pool, and every pool member reachable


def test_train_draw_is_ordered_and_uniform() -> None:
    g = torch.Generator().manual_seed(1)
    counts: Counter[int] = Counter()
    for _ in range(4000):
        d = sample_frame_indices(24, 6, "train", generator=g)
        assert d == sorted(d)
        counts[d[0]] += 1
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 850  # ~1000 each when uniform


def test_bad_sampling_arguments() -> None:
    with pytest.raises(ValueError, match="num_frames >= 1"):
        sample_frame_indices(0, 6)
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sample_frame_indices(10, 6, "val")  # type: ignore[arg-type]


def _labels(counts: dict[int, int]) -> list[int]:
    return [pid for pid, n in counts.items() for _ in range(n)]


RGB = _labels({0: 5, 1: 2, 2: 6, 3: 4, 4: 3, 5: 8})
IR = _labels({0: 3, 1: 4, 2: 1, 3: 5, 4: 6, 5: 2, 6: 3})  # id 6 has no RGB: never sampled


def test_sampler_batches_are_p_ids_by_k_pairs() -> None:
    s = CrossModalIdentitySampler(RGB, IR, num_ids=3, num_instances=2, seed=0)
    batches = s.batches()
    assert len(batches) == min(len(RGB), len(IR)) // 6 == len(s) // 6
    for b in batches:
        assert len(b) == 6
        rgb_ids = [RGB[r] for r, _ in b]
        ir_ids = [IR[i] for _, i in b]
        assert rgb_ids == ir_ids  # the pair at each position shares an identity
        assert [rgb_ids[j] for j in range(0, 6, 2)] == sorted(set(rgb_ids), key=rgb_ids.index)
        assert len(set(rgb_ids)) == 3 and all(c == 2 for c in Counter(rgb_ids).values())
        assert 6 not in rgb_ids
        # without replacement where the id has >= K tracklets of that modality
        for pid in set(rgb_ids):
            r = [x for x, _ in b if RGB[x] == pid]
            if RGB.count(pid) >= 2:
                assert len(set(r)) == 2
    assert list(s) == [p for b in batches for p in b]


def test_sampler_epochs_differ_and_repeat() -> None:
    s = CrossModalIdentitySampler(RGB, IR, 3, 2, seed=5)
    e0 = s.batches()
    s.set_epoch(1)
    assert s.batches() != e0
    s.set_epoch(0)
    assert s.batches() == e0


def test_sampler_shards_are_disjoint_and_cover_the_epoch() -> None:
    rgb = _labels({i: 6 for i in range(10)})
    ir = _labels({i: 5 for i in range(10)})
    whole = CrossModalIdentitySampler(rgb, ir, 2, 2, seed=3)
    shards = [CrossModalIdentitySampler(rgb, ir, 2, 2, seed=3, num_replicas=3, rank=r) for r in range(3)]
    for s in [whole, *shards]:
        s.set_epoch(2)
    got = [s.batches() for s in shards]
    assert all(len(b) == len(got[0]) == len(shards[0]) // 4 for b in got)
    flat = [tuple(b) for shard in got for b in shard]
    assert len(set(flat)) == len(flat)
    everything = [tuple(b) for b in whole.batches()]
    assert set(flat) <= set(everything)
    assert len(flat) == (len(everything) // 3) * 3


def test_sampler_errors() -> None:
    with pytest.raises(ValueError, match="only 2 are"):
        CrossModalIdentitySampler([0, 1, 2], [0, 1], num_ids=3, num_instances=1)
    with pytest.raises(ValueError, match="not enough for one batch"):
        CrossModalIdentitySampler(_labels({0: 1, 1: 1}), _labels({0: 1, 1: 1}), 2, 2)
    with pytest.raises(ValueError, match="rank 2"):
        CrossModalIdentitySampler(RGB, IR, 2, 2, num_replicas=2, rank=2)


def _ddp_worker(rank: int, world: int, init_file: str, out: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        rgb = _labels({i: 6 for i in range(10)})
        ir = _labels({i: 5 for i in range(10)})
        s = CrossModalIdentitySampler(rgb, ir, 2, 2, seed=7)  # rank and world size from the process group
        s.set_epoch(1)
        gathered: list = [None] * world
        dist.all_gather_object(gathered, [tuple(b) for b in s.batches()])
        if rank == 0:
            out["batches"] = gathered
    finally:
        dist.destroy_process_group()


def test_sampler_under_a_real_gloo_process_group(tmp_path) -> None:
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
        per_rank = out["batches"]
    assert len(per_rank) == 2 and len(per_rank[0]) == len(per_rank[1]) > 0
    assert not set(per_rank[0]) & set(per_rank[1])
