"""Training learns to match people across modalities: a short seeded run on a small synthetic set must
beat chance and the training-free descriptor by a clear margin, and the same run with the infrared
identities shuffled must not (so a broken objective, a detached branch or mislabelled pairs fail here).

No wall-clock assertion: the budget is a number of steps.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from cmft.config import load_config
from cmft.data.datasets.hitsz_vcm import load_hitsz_vcm
from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic
from cmft.data.types import VIDataset
from cmft.engine.trainer import train
from cmft.evaluation.retrieval import ClipSpec, Embeddings, embed_test_sets, score_directions
from cmft.models import GreyMotionDescriptor

SYNTH = SynthConfig(ids=80, train_ids=48, height=64, width=32, max_frames=16, tracklets_per_camera=3, seed=5, workers=1)
# the demo recipe (128x64 frames), made small: 2-frame clips and a fixed number of steps (8 epochs x 20)
RECIPE = ["data.seq_len=2", "eval.seq_len=2", "data.workers=0",
          "train.epochs=8", "loss.warm_epochs=4", "train.eval_every=0", "train.max_steps_per_epoch=20"]
MARGIN = 3.0  # mAP points above max(chance, training-free descriptor), averaged over the two directions


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("learn") / "synth"
    generate_synthetic(root, SYNTH)
    return root


def _train(root: Path, run: Path, dataset: VIDataset) -> dict:
    cfg_path = Path(str(resources.files("cmft") / "configs" / "demo_cpu.yaml"))
    cfg = load_config(cfg_path, [f"data.root={root}", *RECIPE])
    return train(cfg, run, dataset=dataset).last_eval


@pytest.fixture(scope="module")
def floors(synth: Path) -> dict[str, float]:
    return _floors(load_hitsz_vcm(synth))


def _floors(dataset: VIDataset) -> dict[str, float]:
    """Per direction, the larger mAP (percent) of the training-free descriptor and of random embeddings."""
    spec = ClipSpec(2, 128, 64, 32, 0)
    desc = score_directions(embed_test_sets(GreyMotionDescriptor(), dataset, spec))
    g = torch.Generator().manual_seed(0)
    chance = {d: [] for d in desc}
    for _ in range(5):
        sets = {m: Embeddings(torch.randn(len(ts), 64, generator=g), np.array([t.pid for t in ts]), np.array([t.camid for t in ts]))
                for m, ts in (("ir", dataset.test_ir), ("rgb", dataset.test_rgb))}
        for d, m in score_directions(sets).items():
            chance[d].append(m["mAP"])
    return {d: 100 * max(desc[d]["mAP"], float(np.mean(chance[d]))) for d in desc}


def _shuffle_ir_identities(dataset: VIDataset) -> VIDataset:
    """The same data with every IR training tracklet given another identity's label (a fixed permutation)."""
    labels = sorted({t.pid for t in dataset.train})
    perm = dict(zip(labels, np.random.default_rng(0).permutation(labels).tolist()))
    train = [dataclasses.replace(t, pid=perm[t.pid]) if t.modality == "ir" else t for t in dataset.train]
    return dataclasses.replace(dataset, train=train)


def _gain(result: dict, floors: dict[str, float]) -> float:
    """Mean over both directions of the model's mAP minus the floor, in points."""
    return float(np.mean([100 * result[d]["mAP"] - floors[d] for d in floors]))


def test_training_learns_to_match_across_modalities(synth: Path, floors: dict[str, float], tmp_path: Path) -> None:
    dataset = load_hitsz_vcm(synth)
    result = _train(synth, tmp_path / "run", dataset)
    got = {d: round(100 * result[d]["mAP"], 1) for d in floors}
    assert all(got[d] > floors[d] for d in floors), (got, floors)
    assert _gain(result, floors) > MARGIN, (got, floors)


def test_shuffled_infrared_identities_do_not_learn_to_match(synth: Path, floors: dict[str, float], tmp_path: Path) -> None:
    """The control that shows the test above can fail: pairs whose IR half is another person."""
    dataset = load_hitsz_vcm(synth)
    result = _train(synth, tmp_path / "run", _shuffle_ir_identities(dataset))
    assert _gain(result, floors) < MARGIN, ({d: round(100 * result[d]["mAP"], 1) for d in floors}, floors)
