"""Synthetic visible-infrared video re-ID data, written in the exact HITSZ-VCM layout (DESIGN.md §3).

Every identity is rendered from its own child seeds (``numpy.random.SeedSequence``), so the files
depend only on the config, never on the worker count. See ``docs/synthetic.md``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cmft.data.datasets.synth_people import Identity, make_rng, sample_appearance, sample_gait
from cmft.data.datasets.synth_render import IR_LOOKS, MODALITY_CODE, camera_look, render_tracklet

__all__ = ["SynthConfig", "TrackletPlan", "generate_synthetic", "identity_parameters", "plan_tracklets"]

GENERATOR = "cmft.synthetic"
CONFIG_FILE = "synth_config.json"
MIN_FRAMES = 12  # the HITSZ-VCM reader drops shorter tracklets
_OWN_ENTRY = re.compile(r"^\d{4}$")

# spawn keys of the independent random streams (the camera streams use key 1, see synth_render)
_KEY_PAIRS, _KEY_LOOK, _KEY_GAIT, _KEY_PLAN, _KEY_TRACK = 0, 2, 3, 4, 5


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the synthetic dataset; the defaults write the built-in 80-identity set."""

    ids: int = 80  # identities in total (pids 0001..); at most 9999
    train_ids: int | None = None  # identities in the train split (the first pids); None = ids // 2
    seed: int = 0  # master seed: the same config writes byte-identical files
    cameras: int = 3  # cameras, each with an RGB (day) and an IR (night) mode under the same camera id
    min_cameras: int = 2  # fewest cameras an identity is seen by, per modality (up to `cameras`)
    tracklets_per_camera: int = 2  # tracklets per (identity, modality, camera)
    min_frames: int = 12  # shortest tracklet (>= 12, the HITSZ-VCM reader's filter)
    max_frames: int = 24  # longest tracklet
    height: int = 128  # crop height in pixels
    width: int = 64  # crop width in pixels
    lookalike_fraction: float = 0.25  # fraction of identities in look-alike pairs (same look, different gait)
    noise: float = 1.0  # scale of sensor noise, blur and brightness flicker (0 = clean frames)
    jpeg_quality: int = 90  # JPEG quality of the frames (1..95)
    ir_look: str = "nir"  # "nir" (near-infrared night camera, the default) or "thermal" (RegDB-like)
    workers: int = 0  # worker processes; 0 = one per CPU core (the output does not depend on it)

    def __post_init__(self) -> None:
        def integer(name: str, lo: int, hi: int | None = None) -> int:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"SynthConfig.{name} must be an integer, got {v!r}")
            if v < lo or (hi is not None and v > hi):
                rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
                raise ValueError(f"SynthConfig.{name} must be {rng}, got {v}")
            return v

        def number(name: str, lo: float, hi: float | None = None) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ValueError(f"SynthConfig.{name} must be a number, got {v!r}")
            if v < lo or (hi is not None and v > hi):
                rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"SynthConfig.{name} must be {rng}, got {v}")
            return float(v)

        ids = integer("ids", 2, 9999)
        if self.train_ids is not None:
            integer("train_ids", 1, ids - 1)
        integer("seed", 0)
        cams = integer("cameras", 2, 99)
        integer("min_cameras", 1, cams)
        integer("tracklets_per_camera", 1, 999)
        lo = integer("min_frames", MIN_FRAMES, 99999)
        integer("max_frames", lo, 99999)
        integer("height", 16, 4096)
        integer("width", 8, 4096)
        number("lookalike_fraction", 0.0, 1.0)
        number("noise", 0.0, 10.0)
        integer("jpeg_quality", 1, 95)
        integer("workers", 0)
        if self.ir_look not in IR_LOOKS:
            raise ValueError(f"SynthConfig.ir_look must be one of {IR_LOOKS}, got {self.ir_look!r}")

    @property
    def n_train(self) -> int:
        """Identities in the train split."""
        return self.ids // 2 if self.train_ids is None else self.train_ids

    def split_of(self, pid: int) -> str:
        """``"train"`` for the first ``n_train`` pids, ``"test"`` after."""
        return "train" if pid <= self.n_train else "test"

    def output_fields(self) -> dict[str, Any]:
        """The fields that determine the files (all but ``workers``)."""
        return {k: v for k, v in asdict(self).items() if k != "workers"}


@dataclass(frozen=True)
class TrackletPlan:
    """One tracklet to render: where it goes on disk and how long it is."""

    pid: int
    modality: str  # "ir" or "rgb"
    cam: int  # camera id (1-based), the same ids in both modalities
    number: int  # tracklet number within (pid, modality, cam), 1-based (the T of the frame names)
    first_frame: int  # number of its first frame file; numbering runs on across the folder's tracklets
    frames: int


def _lookalike_pairs(config: SynthConfig) -> list[tuple[int, int]]:
    """Look-alike pairs, drawn within each split so both members land in the same one."""
    rng = make_rng(config.seed, _KEY_PAIRS)
    pairs: list[tuple[int, int]] = []
    for lo, hi in ((1, config.n_train), (config.n_train + 1, config.ids)):
        pids = np.arange(lo, hi + 1)
        k = min(int(round(config.lookalike_fraction * len(pids) / 2)), len(pids) // 2)
        chosen = rng.permutation(pids)[: 2 * k]
        pairs += [tuple(sorted((int(chosen[2 * i]), int(chosen[2 * i + 1])))) for i in range(k)]  # type: ignore[misc]
    return sorted(pairs)


def identity_parameters(config: SynthConfig = SynthConfig()) -> list[Identity]:
    """Every identity's look and gait, in pid order; look-alike partners share the look, not the gait."""
    partner: dict[int, int] = {}
    for a, b in _lookalike_pairs(config):
        partner[a], partner[b] = b, a
    out: list[Identity] = []
    gaits: dict[int, Any] = {}
    for pid in range(1, config.ids + 1):
        other = partner.get(pid)
        look_key = pid if other is None else min(pid, other)
        appearance = sample_appearance(make_rng(config.seed, _KEY_LOOK, look_key))
        unlike = gaits.get(other) if other is not None and other < pid else None
        gaits[pid] = sample_gait(make_rng(config.seed, _KEY_GAIT, pid), unlike)
        out.append(Identity(pid, config.split_of(pid), other, appearance, gaits[pid]))
    return out


def plan_tracklets(config: SynthConfig, pid: int) -> list[TrackletPlan]:
    """The tracklets of one identity: cameras per modality, tracklet lengths, frame numbers.

    Every IR camera of an identity has an RGB camera other than itself, so every infrared query
    keeps a true match after the HITSZ-VCM same-camera removal.
    """
    rng = make_rng(config.seed, _KEY_PLAN, pid)
    cams = np.arange(1, config.cameras + 1)
    n_rgb = int(rng.integers(config.min_cameras, config.cameras + 1))
    rgb = sorted(int(c) for c in rng.choice(cams, n_rgb, replace=False))
    ir_pool = cams if n_rgb > 1 else cams[cams != rgb[0]]
    n_ir = int(rng.integers(min(config.min_cameras, len(ir_pool)), len(ir_pool) + 1))
    ir = sorted(int(c) for c in rng.choice(ir_pool, n_ir, replace=False))
    plans: list[TrackletPlan] = []
    for modality, chosen in (("ir", ir), ("rgb", rgb)):
        for cam in chosen:
            next_frame = 1
            for number in range(1, config.tracklets_per_camera + 1):
                n = int(rng.integers(config.min_frames, config.max_frames + 1))
                plans.append(TrackletPlan(pid, modality, cam, number, next_frame, n))
                next_frame += n
    return plans


def _render_identity(config: SynthConfig, ident: Identity, out: str) -> list[TrackletPlan]:
    """Render and write every tracklet of one identity (runs in a worker process)."""
    plans = plan_tracklets(config, ident.pid)
    for p in plans:
        look = camera_look(config.seed, p.cam, p.modality, config.height, config.width, config.ir_look)
        rng = make_rng(config.seed, _KEY_TRACK, p.pid, MODALITY_CODE[p.modality], p.cam, p.number)
        frames = render_tracklet(ident, look, p.frames, rng, config.noise)
        folder = Path(out) / f"{p.pid:04d}" / p.modality / f"D{p.cam}"
        folder.mkdir(parents=True, exist_ok=True)
        mode = "L" if p.modality == "ir" else "RGB"
        for i, frame in enumerate(frames):
            Image.fromarray(frame, mode).save(folder / f"{p.first_frame + i}.jpg", quality=config.jpeg_quality)
    return plans


def _prepare_output(out: Path) -> None:
    """Create ``out``, or clear a previous synthetic output there; refuse any other non-empty folder."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if not out.exists():
        out.mkdir(parents=True)
        return
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    marker = out / CONFIG_FILE
    try:
        ours = json.loads(marker.read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise FileExistsError(
            f"{out} is not empty and is not a previous `cmft synth` output (no {CONFIG_FILE}); "
            "choose a new or empty folder"
        )
    foreign = [e for e in entries if not (_OWN_ENTRY.match(e) or e in ("info", CONFIG_FILE))]
    if foreign:
        raise FileExistsError(
            f"{out} holds a previous synthetic dataset plus other files ({', '.join(foreign[:5])}); "
            "refusing to overwrite it: move those files or choose another folder"
        )
    for e in entries:
        path = out / e
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_info(out: Path, config: SynthConfig, plans: dict[int, list[TrackletPlan]]) -> dict[str, Any]:
    """Write the five ``info/`` files and return the counts."""
    info = out / "info"
    info.mkdir()
    counts: dict[str, Any] = {s: {m: {"tracklets": 0, "frames": 0} for m in ("ir", "rgb")} for s in ("train", "test")}
    query: list[int] = []
    for split in ("train", "test"):
        names: list[str] = []
        rows: list[str] = []
        for pid in sorted(plans):
            if config.split_of(pid) != split:
                continue
            for p in plans[pid]:
                code = MODALITY_CODE[p.modality]
                start = len(names) + 1
                names += [f"{pid:04d}M{code}D{p.cam}T{p.number}F{p.first_frame + i}.jpg" for i in range(p.frames)]
                rows.append(f"{code} {start} {len(names)} {pid} {p.cam}")
                if split == "test" and p.modality == "ir":
                    query.append(len(rows))
                counts[split][p.modality]["tracklets"] += 1
                counts[split][p.modality]["frames"] += p.frames
        (info / f"{split}_name.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
        (info / f"track_{split}_info.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (info / "query_IDX.txt").write_text(" ".join(map(str, query)) + "\n", encoding="utf-8")
    return counts


def _resolve_workers(config: SynthConfig) -> int:
    n = config.workers or os.cpu_count() or 1
    return max(1, min(n, config.ids))


def generate_synthetic(
    out: str | Path,
    config: SynthConfig = SynthConfig(),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write the synthetic dataset to ``out`` in the HITSZ-VCM layout and return its counts.

    ``out`` must be new, empty, or a previous synthetic output (which is replaced). The config and
    the counts are also written to ``out/synth_config.json``. ``progress(done, total)`` is called
    as identities finish.
    """
    out = Path(out)
    _prepare_output(out)
    meta: dict[str, Any] = {"generator": GENERATOR, "format": 1, "complete": False, "config": config.output_fields()}
    _write_json(out / CONFIG_FILE, meta)  # marks the folder as ours even if rendering is interrupted

    identities = identity_parameters(config)
    total = len(identities)
    if progress is not None:
        progress(0, total)
    plans: dict[int, list[TrackletPlan]] = {}
    workers = _resolve_workers(config)
    if workers == 1:
        for ident in identities:
            plans[ident.pid] = _render_identity(config, ident, str(out))
            if progress is not None:
                progress(len(plans), total)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_render_identity, config, ident, str(out)): ident.pid for ident in identities}
            for fut in as_completed(futures):
                plans[futures[fut]] = fut.result()
                if progress is not None:
                    progress(len(plans), total)

    counts = _write_info(out, config, plans)
    pairs = [[a, b] for a, b in _lookalike_pairs(config)]
    summary: dict[str, Any] = {
        "ids": config.ids,
        "train_ids": config.n_train,
        "test_ids": config.ids - config.n_train,
        "cameras": config.cameras,
        "ir_look": config.ir_look,
        "lookalike_pairs": pairs,
        "train": counts["train"],
        "test": counts["test"],
        "query": counts["test"]["ir"]["tracklets"],
        "gallery": counts["test"]["rgb"]["tracklets"],
        "tracklets": sum(c[m]["tracklets"] for c in counts.values() for m in c),
        "frames": sum(c[m]["frames"] for c in counts.values() for m in c),
    }
    _write_json(out / CONFIG_FILE, {**meta, "complete": True, "summary": summary})
    return summary
