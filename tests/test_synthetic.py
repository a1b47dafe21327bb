"""The synthetic VI video generator: exact HITSZ-VCM layout, determinism, look-alike pairs, cross-modal hardness."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmft.data.datasets.hitsz_vcm import load_hitsz_vcm
from cmft.data.datasets.synth_people import Pattern, luminance, make_rng, sample_appearance
from cmft.data.datasets.synth_render import camera_look, render_tracklet
from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic, identity_parameters, plan_tracklets

SMALL = SynthConfig(ids=8, train_ids=4, height=64, width=32, lookalike_fraction=0.5, max_frames=16, workers=1)
NAME = re.compile(r"^(\d{4})M([12])D(\d+)T(\d+)F(\d+)\.jpg$")


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _read_rows(path: Path) -> list[tuple[int, int, int, int, int]]:
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines()]  # type: ignore[misc]


def _tracklets(root: Path) -> list[tuple[int, int, int, np.ndarray]]:
    """(pid, modality, cam, frames as float (T, H, W, C)) for every train and test tracklet."""
    out = []
    for split in ("train", "test"):
        names = (root / "info" / f"{split}_name.txt").read_text().splitlines()
        for mod, start, end, pid, cam in _read_rows(root / "info" / f"track_{split}_info.txt"):
            folder = root / f"{pid:04d}" / ("ir" if mod == 1 else "rgb") / f"D{cam}"
            paths = [folder / f"{n.split('F')[-1]}" for n in names[start - 1 : end]]
            frames = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) for p in paths])
            out.append((pid, mod, cam, frames))
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "small"
    return out, generate_synthetic(out, SMALL)


@pytest.fixture(scope="module", params=["nir", "thermal"])
def medium(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[tuple[int, int, int, np.ndarray]]]:
    """(IR look, tracklets) of enough identities for simple statistics across people (12 frames each)."""
    out = tmp_path_factory.mktemp("synth") / f"medium_{request.param}"
    cfg = SynthConfig(ids=40, train_ids=8, height=64, width=32, max_frames=12, workers=1, ir_look=request.param)
    generate_synthetic(out, cfg)
    return request.param, _tracklets(out)


def test_layout_and_info_files(small: tuple[Path, dict]) -> None:
    root, summary = small
    info = root / "info"
    assert sorted(p.name for p in info.iterdir()) == sorted(
        ["train_name.txt", "test_name.txt", "track_train_info.txt", "track_test_info.txt", "query_IDX.txt"]
    )
    listed: set[Path] = set()
    pids: dict[str, set[int]] = {}
    cams: dict[tuple[int, int], set[int]] = defaultdict(set)
    counts: dict[str, dict[str, list[int]]] = {}
    for split in ("train", "test"):
        names = (info / f"{split}_name.txt").read_text().splitlines()
        rows = _read_rows(info / f"track_{split}_info.txt")
        decoded = []
        for name in names:
            m = NAME.match(name)
            assert m, name
            pid, mod, cam, _t, frame = m.groups()
            path = root / pid / ("ir" if mod == "1" else "rgb") / f"D{cam}" / f"{frame}.jpg"
            assert path.is_file(), path
            decoded.append((int(pid), int(mod), int(cam), path))
        assert len({d[3] for d in decoded}) == len(decoded), "two names map to the same file"
        listed |= {d[3] for d in decoded}
        expected_start = 1
        counts[split] = {"ir": [0, 0], "rgb": [0, 0]}
        for mod, start, end, pid, cam in rows:
            assert start == expected_start and end >= start
            expected_start = end + 1
            assert end - start + 1 >= 12
            assert {d[:3] for d in decoded[start - 1 : end]} == {(pid, mod, cam)}
            assert len({NAME.match(n).group(4) for n in names[start - 1 : end]}) == 1  # type: ignore[union-attr]
            counts[split]["ir" if mod == 1 else "rgb"][0] += 1
            counts[split]["ir" if mod == 1 else "rgb"][1] += end - start + 1
            cams[(pid, mod)].add(cam)
        assert expected_start == len(names) + 1, "the tracklet ranges must cover the name list exactly"
        pids[split] = {r[3] for r in rows}
    assert pids["train"] == set(range(1, 5)) and pids["test"] == set(range(5, 9))
    # every jpg on disk is listed, and frame numbers run 1..N within each folder
    on_disk = set(root.rglob("*.jpg"))
    assert on_disk == listed
    for folder in {p.parent for p in on_disk}:
        assert sorted(int(p.stem) for p in folder.iterdir()) == list(range(1, len(list(folder.iterdir())) + 1))
    # queries are exactly the IR test rows
    test_rows = _read_rows(info / "track_test_info.txt")
    query = [int(x) for x in (info / "query_IDX.txt").read_text().split()]
    assert query == [i for i, r in enumerate(test_rows, 1) if r[0] == 1]
    # both modalities for everyone; every IR camera of a test id has an RGB match in another camera
    for pid in range(1, 9):
        assert cams[(pid, 1)] and cams[(pid, 2)]
        if pid in pids["test"]:
            assert all(cams[(pid, 2)] - {c} for c in cams[(pid, 1)])
    for split in ("train", "test"):
        for m in ("ir", "rgb"):
            assert [summary[split][m]["tracklets"], summary[split][m]["frames"]] == counts[split][m]
    assert summary["query"] == len(query) and summary["gallery"] == len(test_rows) - len(query)
    meta = json.loads((root / "synth_config.json").read_text())
    assert meta["complete"] and meta["summary"] == summary and meta["config"]["ids"] == 8


def test_reader_loads_it(small: tuple[Path, dict]) -> None:
    root, summary = small
    ds = load_hitsz_vcm(root)
    assert len(ds.train_of("ir")) == summary["train"]["ir"]["tracklets"]
    assert len(ds.train_of("rgb")) == summary["train"]["rgb"]["tracklets"]
    assert len(ds.test_ir) == summary["query"] and len(ds.test_rgb) == summary["gallery"]
    assert ds.num_train_pids == 4 and {t.modality for t in ds.test_ir} == {"ir"}


def test_image_modes(small: tuple[Path, dict]) -> None:
    root, _ = small
    for p in list(root.glob("*/ir/*/1.jpg"))[:4]:
        with Image.open(p) as im:
            assert im.mode == "L" and im.size == (32, 64)  # IR carries no colour
    chroma = []
    for p in list(root.glob("*/rgb/*/1.jpg"))[:4]:
        with Image.open(p) as im:
            assert im.mode == "RGB" and im.size == (32, 64)
            a = np.asarray(im, dtype=np.float32)
            chroma.append(np.abs(a - a.mean(-1, keepdims=True)).mean())
    assert min(chroma) > 2.0  # really coloured, not grey saved as RGB


def test_determinism_and_workers(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, ids=4, train_ids=2)
    generate_synthetic(tmp_path / "a", cfg)
    reference = _tree_hash(tmp_path / "a")
    generate_synthetic(tmp_path / "b", dataclasses.replace(cfg, workers=2))
    assert _tree_hash(tmp_path / "b") == reference
    generate_synthetic(tmp_path / "b", cfg)  # over a previous output: replaced, byte for byte
    assert _tree_hash(tmp_path / "b") == reference
    generate_synthetic(tmp_path / "c", dataclasses.replace(cfg, seed=1))
    assert _tree_hash(tmp_path / "c") != reference


def test_lookalike_pairs_share_look_not_gait() -> None:
    cfg = SynthConfig(ids=40, lookalike_fraction=0.5)
    idents = {i.pid: i for i in identity_parameters(cfg)}
    paired = [i for i in idents.values() if i.partner is not None]
    assert len(paired) == 20  # 5 pairs per split
    for i in paired:
        j = idents[i.partner]
        assert j.partner == i.pid and j.split == i.split
        assert i.appearance == j.appearance
        assert abs(i.gait.frequency - j.gait.frequency) >= 0.03 and abs(i.gait.arm - j.gait.arm) >= 0.2
    looks = [i.appearance for i in idents.values() if i.partner is None or i.pid < i.partner]
    assert len({repr(a) for a in looks}) == len(looks)  # everyone else looks different
    assert all(i.partner is None for i in identity_parameters(dataclasses.replace(cfg, lookalike_fraction=0.0)))


def test_what_each_modality_sees() -> None:
    """Thermal IR is blind to colour and RGB to temperature; body shape and garment pattern show in both."""
    ident = identity_parameters(SynthConfig(ids=2, lookalike_fraction=0))[0]
    other = sample_appearance(make_rng(99, 0))
    app = dataclasses.replace(
        ident.appearance,
        upper=Pattern("checks", 8.0, 0.2),
        thermal=dataclasses.replace(ident.appearance.thermal, pattern=0.15),
    )

    def frames(modality: str, **change: object) -> np.ndarray:
        look = camera_look(0, 1, modality, 128, 64, "thermal")
        new = dataclasses.replace(ident, appearance=dataclasses.replace(app, **change))
        return render_tracklet(new, look, 12, make_rng(7, 1)).astype(np.float32)

    def changed(a: np.ndarray, b: np.ndarray) -> float:
        return float((np.abs(a - b) > 4).mean())

    ir, rgb = frames("ir"), frames("rgb")
    assert np.array_equal(ir, frames("ir", colours=other.colours))
    assert np.array_equal(rgb, frames("rgb", thermal=other.thermal))
    assert changed(rgb, frames("rgb", colours=other.colours)) > 0.05
    assert changed(ir, frames("ir", thermal=other.thermal)) > 0.05
    for change, at_least in (({"shape": other.shape}, 0.05), ({"upper": Pattern("hstripes", 12.0, 0.0)}, 0.01)):
        assert changed(ir, frames("ir", **change)) > at_least, change
        assert changed(rgb, frames("rgb", **change)) > at_least, change


def test_near_infrared_sees_luminance_never_hue() -> None:
    """The NIR look: garment brightness follows visible luminance through per-dye gains; hue never enters,
    nor does the thermal signature; the dye gains do."""
    ident = identity_parameters(SynthConfig(ids=2, lookalike_fraction=0))[0]
    app = ident.appearance
    other = sample_appearance(make_rng(99, 0))
    look = camera_look(0, 1, "ir", 128, 64, "nir")
    assert look.ir_look == "nir" and camera_look(0, 1, "ir", 128, 64, "thermal").ir_look == "thermal"

    def frames(**change: object) -> np.ndarray:
        new = dataclasses.replace(ident, appearance=dataclasses.replace(app, **change))
        return render_tracklet(new, look, 12, make_rng(7, 1)).astype(np.float32)

    grey = {f.name: (luminance(getattr(app.colours, f.name)),) * 3 for f in dataclasses.fields(app.colours)}
    base = frames()
    assert np.array_equal(base, frames(colours=dataclasses.replace(app.colours, **grey)))  # hue: no effect
    assert np.array_equal(base, frames(thermal=other.thermal))
    assert float((np.abs(base - frames(nir=other.nir)) > 4).mean()) > 0.03
    darker = {k: tuple(0.3 * x for x in getattr(app.colours, k)) for k in ("upper", "lower")}
    assert frames(colours=dataclasses.replace(app.colours, **darker)).mean() < base.mean()  # luminance: shows
    for g in (app.nir.upper, app.nir.lower, app.nir.shoes):
        assert 0.6 <= g[0] <= 1.4
    with pytest.raises(ValueError, match="IR look"):
        camera_look(0, 1, "ir", 128, 64, "sonar")


def test_background_tells_the_camera_not_the_person(medium: tuple[str, list]) -> None:
    """Border strips (background) identify the camera but not the person, within a camera or across modalities."""
    _, medium = medium  # type: ignore[assignment]
    feats = np.array([[f[:, :, :3].mean(), f[:, :, -3:].mean(), f[:, : f.shape[1] // 2, :3].mean(),
                       f[:, f.shape[1] // 2 :, -3:].mean()] for *_, f in medium])
    pid = np.array([i[0] for i in medium])
    mod = np.array([i[1] for i in medium])
    cam = np.array([i[2] for i in medium])
    for m in (1, 2):
        # within one camera, two tracklets of one person have backgrounds no more alike than two people's
        same, other = [], []
        for c in np.unique(cam):
            x = feats[(mod == m) & (cam == c)].mean(1)
            p = pid[(mod == m) & (cam == c)]
            d = np.abs(x[:, None] - x[None, :])
            same.append(d[(p[:, None] == p[None, :]) & ~np.eye(len(p), dtype=bool)])
            other.append(d[p[:, None] != p[None, :]])
        assert np.concatenate(same).mean() / np.concatenate(other).mean() > 0.8
        # control: within a modality the nearest other background is from the same camera
        idx = np.nonzero(mod == m)[0]
        d = np.abs(feats[idx, None] - feats[None, idx]).sum(-1)
        np.fill_diagonal(d, np.inf)
        assert np.mean(cam[idx] == cam[idx[d.argmin(1)]]) > 0.8
    # across modalities (standardised per modality), the nearest background is someone else's
    z = feats.copy()
    for m in (1, 2):
        z[mod == m] = (z[mod == m] - z[mod == m].mean(0)) / z[mod == m].std(0)
    q, g = np.nonzero(mod == 1)[0], np.nonzero(mod == 2)[0]
    d = np.abs(z[q, None] - z[None, g]).sum(-1)
    d[(pid[q, None] == pid[None, g]) & (cam[q, None] == cam[None, g])] = np.inf  # the HITSZ-VCM rule
    assert np.mean(pid[q] == pid[g[d.argmin(1)]]) < 0.1  # chance is about 2.5%


def test_colour_predicts_infrared_only_as_the_look_says(medium: tuple[str, list]) -> None:
    """Thermal: the RGB torso says nothing about the IR torso. Near-infrared: its brightness says something,
    never all (per-dye gains). Each modality is self-consistent across cameras.

    Measure: median of a torso patch minus the median of the border strips (the person's contrast
    against the background, which survives the IR camera's automatic gain).
    """
    look, medium = medium  # type: ignore[assignment]
    by_id: dict[tuple[int, int], dict[int, np.ndarray]] = defaultdict(dict)
    for pid, mod, cam, f in medium:
        h, w = f.shape[1:3]
        torso = np.median(f[:, int(0.36 * h) : int(0.48 * h), int(0.42 * w) : int(0.58 * w)].reshape(-1, 3), 0)
        border = np.median(np.concatenate([f[:, :, :3], f[:, :, -3:]], 2).reshape(-1, 3), 0)
        by_id[(pid, mod)].setdefault(cam, torso - border)  # the first tracklet in each camera
    pids = sorted({p for p, _ in by_id})
    ir = np.array([np.mean(list(by_id[(p, 1)].values()), 0)[0] for p in pids])
    rgb = np.array([np.mean(list(by_id[(p, 2)].values()), 0) for p in pids])  # (ids, 3)
    if look == "thermal":
        for channel in (rgb.mean(1), rgb[:, 0], rgb[:, 1], rgb[:, 2]):
            assert abs(np.corrcoef(channel, ir)[0, 1]) < 0.35
    else:
        luma = rgb @ np.array([0.299, 0.587, 0.114])
        assert 0.35 < np.corrcoef(luma, ir)[0, 1] < 0.95
    # controls: the measure agrees between two cameras seeing the same person, in each modality
    for m in (1, 2):
        two = np.array([[v.mean() for v in list(by_id[(p, m)].values())[:2]] for p in pids])
        assert np.corrcoef(two[:, 0], two[:, 1])[0, 1] > 0.6


def test_camera_plan_keeps_every_query_answerable() -> None:
    for cameras, min_cameras in ((2, 1), (3, 1), (3, 2), (5, 2)):
        cfg = SynthConfig(ids=30, cameras=cameras, min_cameras=min_cameras)
        for pid in range(1, 31):
            plans = plan_tracklets(cfg, pid)
            ir = {p.cam for p in plans if p.modality == "ir"}
            rgb = {p.cam for p in plans if p.modality == "rgb"}
            assert len(ir) >= min_cameras and len(rgb) >= min_cameras
            assert all(rgb - {c} for c in ir)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ids", 1, "ids"), ("ids", "80", "ids"), ("train_ids", 8, "train_ids"), ("train_ids", 0, "train_ids"),
        ("seed", -1, "seed"), ("cameras", 1, "cameras"), ("min_cameras", 4, "min_cameras"),
        ("min_frames", 11, "min_frames"), ("max_frames", 11, "max_frames"), ("height", 8, "height"),
        ("lookalike_fraction", 1.5, "lookalike_fraction"), ("noise", -1, "noise"), ("jpeg_quality", 0, "jpeg_quality"),
        ("workers", -1, "workers"), ("tracklets_per_camera", True, "tracklets_per_camera"),
    ],
)
def test_bad_config(field: str, value: object, message: str) -> None:
    base = {"ids": 8} if field != "ids" else {}
    with pytest.raises(ValueError, match=rf"SynthConfig\.{message}\b"):
        SynthConfig(**base, **{field: value})  # type: ignore[arg-type]


def test_refuses_foreign_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    cfg = dataclasses.replace(SMALL, ids=2, train_ids=1)
    with pytest.raises(FileExistsError, match="not empty and is not a previous"):
        generate_synthetic(tmp_path / "mine", cfg)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        generate_synthetic(tmp_path / "file", cfg)
    calls: list[tuple[int, int]] = []
    generate_synthetic(tmp_path / "ok", cfg, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 2) and calls[-1] == (2, 2)
    (tmp_path / "ok" / "extra.txt").write_text("x")
    with pytest.raises(FileExistsError, match="other files"):
        generate_synthetic(tmp_path / "ok", cfg)
    assert capsys.readouterr() == ("", "")  # library code never prints
