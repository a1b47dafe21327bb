"""Shared fixtures: the golden reference outputs (copied into tests/data/golden) and a tiny HITSZ-VCM tree written on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# the community reference code's outputs on fixed inputs, copied from ../shared/golden so a clone runs the parity tests
GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
# real footage and detector weights (../shared/data/README.md); tests that use them skip when absent
DATA = SHARED / "data"
PETS = DATA / "mot15" / "PETS09-S2L1"
YF = DATA / "weights" / "yolo_fastest"
BODY = f"darknet:{YF / 'yolo-fastest-1.1_body.cfg'}:{YF / 'yolo-fastest-1.1_body.weights'}"


@pytest.fixture(scope="session")
def golden() -> Path:
    assert GOLDEN.is_dir(), f"golden reference outputs missing from the checkout: {GOLDEN}"
    return GOLDEN


def write_vcm_tree(
    root: Path,
    train: list[tuple[int, int, int, int]],
    test: list[tuple[int, int, int, int]],
    size: tuple[int, int] = (16, 8),
    seed: int = 0,
) -> Path:
    """Write a HITSZ-VCM tree from ``(modality, pid, cam, n_frames)`` rows; IR test rows become the queries."""
    rng = np.random.default_rng(seed)
    (root / "info").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("test", test)):
        names: list[str] = []
        info: list[str] = []
        next_frame: dict[tuple[int, int, int], int] = {}
        for t, (mod, pid, cam, n) in enumerate(rows, 1):
            start = len(names) + 1
            folder = root / f"{pid:04d}" / ("ir" if mod == 1 else "rgb") / f"D{cam}"
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(n):
                f = next_frame.get((mod, pid, cam), 1)
                next_frame[(mod, pid, cam)] = f + 1
                names.append(f"{pid:04d}M{mod}D{cam}T{t}F{f}.jpg")
                h, w = size
                if mod == 1:
                    Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L").save(folder / f"{f}.jpg")
                else:
                    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB").save(folder / f"{f}.jpg")
            info.append(f"{mod} {start} {len(names)} {pid} {cam}")
        (root / "info" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        (root / "info" / f"track_{split}_info.txt").write_text("\n".join(info) + "\n")
    query = [str(i) for i, (mod, *_rest) in enumerate(test, 1) if mod == 1]
    (root / "info" / "query_IDX.txt").write_text(" ".join(query) + "\n")
    return root


TINY_TRAIN = [(1, 5, 1, 12), (2, 5, 2, 14), (1, 9, 3, 13), (2, 9, 1, 12), (2, 9, 2, 5), (1, 2, 2, 20), (2, 2, 3, 12)]
TINY_TEST = [(1, 101, 1, 12), (2, 101, 2, 15), (1, 102, 2, 16), (2, 102, 1, 12), (2, 102, 3, 11)]


@pytest.fixture()
def tiny_vcm(tmp_path: Path) -> Path:
    """3 train ids (5, 9, 2), 2 test ids; one train and one test tracklet are below 12 frames."""
    return write_vcm_tree(tmp_path / "vcm", TINY_TRAIN, TINY_TEST)


TRAIN4 = [(m, pid, cam, 14) for pid in (1, 2, 3, 4) for m, cam in ((1, 1), (2, 2), (1, 3), (2, 1))]
TEST3 = [(m, pid, cam, 13) for pid in (11, 12, 13) for m, cam in ((1, 1), (2, 2), (2, 1))]


@pytest.fixture(scope="session")
def vcm4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train ids with 2 tracklets per modality, 3 test ids: enough for P=2 x K=2 training batches."""
    return write_vcm_tree(tmp_path_factory.mktemp("vcm4"), TRAIN4, TEST3, size=(32, 16))


def tiny_train_overrides(root: Path, *extra: str) -> list[str]:
    """A CPU-quick training run on :func:`vcm4` (ResNet-18, 64x32 frames, 3-frame clips)."""
    return [
        f"data.root={root}", "data.height=64", "data.width=32", "data.seq_len=3", "data.num_ids=2",
        "data.num_instances=2", "data.workers=0", "model.name=cmft_r18", "loss.warm_epochs=1",
        "train.eval_every=1", "eval.seq_len=3", "optim.warmup_epochs=1", "train.amp=fp32", "train.epochs=3", *extra,
    ]


@pytest.fixture(scope="session")
def tiny_checkpoint(vcm4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch cmft_r18 run on :func:`vcm4`: a real checkpoint for evaluation, extraction and export tests."""
    from typer.testing import CliRunner

    from cmft.cli import app

    run = tmp_path_factory.mktemp("tiny_run")
    r = CliRunner().invoke(app, ["train", "--out", str(run), *tiny_train_overrides(vcm4, "train.epochs=1")])
    assert r.exit_code == 0, r.output
    return run / "last.pt"


def reference_directions(sets: dict, protocol: str = "hitsz_vcm") -> dict[str, dict]:
    """Both directions scored apart from cmft's evaluator: float64 cosine distances of the embeddings and the
    plain one-query-at-a-time evaluator (``cmft.evaluation.reference``). ``sets``: ``{"ir": Embeddings, "rgb": ...}``."""
    import numpy as np

    from cmft.evaluation.reference import reference_evaluate

    def unit(x) -> np.ndarray:  # noqa: ANN001
        x = np.asarray(x, np.float64)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    out = {}
    for direction, (qm, gm) in {"ir2rgb": ("ir", "rgb"), "rgb2ir": ("rgb", "ir")}.items():
        q, g = sets[qm], sets[gm]
        out[direction] = reference_evaluate(-unit(q.feats) @ unit(g.feats).T, q.pids, g.pids, q.camids, g.camids, protocol)
    return out


def assert_metrics_equal(got: dict, want: dict, scale: float = 1.0) -> None:
    """``got`` (a JSON form: ``cmc`` list or ``rank1``..``rank20``, ``mAP``, ``mINP``) equals the reference ``want``
    (fractions), with ``scale`` 100 for percent."""
    import pytest

    assert got["mAP"] == pytest.approx(scale * float(want["mAP"]), abs=1e-6 * scale)
    assert got["mINP"] == pytest.approx(scale * float(want["mINP"]), abs=1e-6 * scale)
    if "cmc" in got:
        assert got["cmc"] == pytest.approx([scale * float(c) for c in want["cmc"]], abs=1e-6 * scale)
        assert got["num_valid_queries"] == want["num_valid_queries"]
    else:
        for r in (1, 5, 10, 20):
            assert got[f"rank{r}"] == pytest.approx(scale * float(want["cmc"][r - 1]), abs=1e-6 * scale)
