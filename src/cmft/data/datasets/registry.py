"""The dataset readers by name, and which one a folder's layout calls for.

``load_dataset("auto", root)`` reads HITSZ-VCM (``info/``), SYSU-MM01 (``exp/`` + ``cam1..cam6``),
RegDB (``idx/`` + ``Visible``/``Thermal``), BUPTCampus (``DATA/`` + ``data_paths.json``) and LLCM (``idx/`` +
``test_vis``/``test_nir``) trees alike; every reader returns a :class:`VIDataset` whose
``protocol`` names its evaluation rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmft.data.errors import DatasetFormatError
from cmft.data.types import Tracklet, VIDataset

DATASETS = ("hitsz_vcm", "sysu_mm01", "regdb", "buptcampus", "llcm")


def detect_dataset(root: str | Path) -> str:
    """The dataset format of a folder, from its layout (each record's ``detect``, in table order); a clear error
    when it is none of them."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset root is not a directory")
    for record in RECORDS.values():
        if record.detect(root):
            return record.name
    raise DatasetFormatError(
        f"{root}: not a known dataset layout: " + ", ".join(f"{r.title} has {r.layout}" for r in RECORDS.values())
    )


@dataclass(frozen=True)
class DatasetOptions:
    """Everything a reader can be asked, in one place; each reader takes the options that apply to it."""

    trial: int | None = None  # SYSU-MM01, LLCM: gallery draw (default 0); RegDB: split 1..10 (default 1)
    mode: str = "all"  # SYSU-MM01: all or indoor search
    shots: int = 1  # SYSU-MM01: gallery images per identity and camera
    skip_missing: bool = False  # HITSZ-VCM: drop listed frames missing on disk instead of failing
    check_files: bool = True  # HITSZ-VCM, RegDB: every listed frame must exist
    splits: tuple[str, ...] | None = None  # HITSZ-VCM: None = each split whose name list is not empty
    auxiliary: bool = False  # BUPTCampus: also train on train_auxiliary.txt
    protocol: str | None = None  # BUPTCampus: buptcampus (the authors' rule, default) or buptcampus_m3reid


def _hitsz_vcm(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.hitsz_vcm import load_hitsz_vcm

    splits = o.splits
    if splits is None:  # a `cmft track` export may hold only the test split
        present = tuple(s for s in ("train", "test") if (root / "info" / f"{s}_name.txt").is_file()
                        and (root / "info" / f"{s}_name.txt").stat().st_size > 0)
        splits = present or ("train", "test")
    return load_hitsz_vcm(root, check_files=o.check_files, skip_missing=o.skip_missing, splits=splits)


def _sysu_mm01(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.sysu_mm01 import load_sysu_mm01

    return load_sysu_mm01(root, mode=o.mode, trial=0 if o.trial is None else o.trial, shots=o.shots)


def _regdb(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.regdb import load_regdb

    return load_regdb(root, trial=1 if o.trial is None else o.trial, check_files=o.check_files)


def _buptcampus(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.buptcampus import load_buptcampus

    return load_buptcampus(root, check_files=o.check_files, auxiliary=o.auxiliary, protocol=o.protocol or "buptcampus")


def _llcm(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.llcm import load_llcm

    return load_llcm(root, trial=0 if o.trial is None else o.trial, check_files=o.check_files)


# -- detection: what each layout has ----------------------------------------------------------------------------
def _is_buptcampus(root: Path) -> bool:
    from cmft.data.datasets.buptcampus import is_buptcampus

    return is_buptcampus(root)


def _is_llcm(root: Path) -> bool:
    from cmft.data.datasets.llcm import is_llcm

    return is_llcm(root)


def _is_hitsz_vcm(root: Path) -> bool:
    return (root / "info").is_dir()


def _is_sysu_mm01(root: Path) -> bool:
    return (root / "exp").is_dir() and any((root / f"cam{c}").is_dir() for c in range(1, 7))


def _is_regdb(root: Path) -> bool:
    return (root / "idx").is_dir() and ((root / "Visible").is_dir() or (root / "Thermal").is_dir())


# -- what `cmft index` embeds of each: every test tracklet of both modalities ---------------------------------------
def _index_hitsz_vcm(root: Path) -> list[Tracklet]:
    from cmft.data.datasets.hitsz_vcm import load_hitsz_vcm

    ds = load_hitsz_vcm(root, splits=("test",))
    return ds.test_ir + ds.test_rgb


def _index_sysu_mm01(root: Path) -> list[Tracklet]:
    from cmft.data.datasets.sysu_mm01 import sysu_gallery, sysu_query, sysu_tracklets

    # every visible image: a "draw" of unlimited shots, back in the listing's order (id, camera, file)
    visible = sorted(sysu_gallery(root, "all", 0, shots=1 << 30), key=lambda it: (f"{it[1]:04d}", it[2], it[0]))
    return sysu_tracklets(root, sysu_query(root) + visible)


def _index_regdb(root: Path) -> list[Tracklet]:
    ds = _regdb(root, DatasetOptions(trial=1))
    return ds.test_ir + ds.test_rgb


def _index_buptcampus(root: Path) -> list[Tracklet]:
    ds = _buptcampus(root, DatasetOptions())  # query and gallery rows of both modalities
    return ds.test_ir + ds.test_rgb


def _index_llcm(root: Path) -> list[Tracklet]:
    from cmft.data.datasets.llcm import llcm_draws

    queries, _ = llcm_draws(root, range(0))  # every test image of each modality (each draw's gallery is a subset)
    return queries["ir"] + queries["rgb"]


@dataclass(frozen=True)
class DatasetRecord:
    """Everything the toolkit knows of one dataset, in one place: how to recognise its layout, how to read it,
    its evaluation rule, and which tracklets ``cmft index`` embeds."""

    name: str
    title: str
    layout: str  # what its root holds, for error messages
    detect: Callable[[Path], bool]
    read: Callable[[Path, DatasetOptions], VIDataset]
    protocol: str  # the default evaluation rule (cmft.evaluation.protocols)
    index_tracklets: Callable[[Path], list[Tracklet]]


# the dataset table, in detection order (BUPTCampus and LLCM before the layouts their folders resemble)
RECORDS: dict[str, DatasetRecord] = {r.name: r for r in (
    DatasetRecord("buptcampus", "BUPTCampus", "DATA/ and data_paths.json", _is_buptcampus, _buptcampus, "buptcampus",
                  _index_buptcampus),
    DatasetRecord("llcm", "LLCM", "idx/train_vis.txt, test_vis/ and test_nir/", _is_llcm, _llcm, "llcm", _index_llcm),
    DatasetRecord("hitsz_vcm", "HITSZ-VCM", "info/", _is_hitsz_vcm, _hitsz_vcm, "hitsz_vcm", _index_hitsz_vcm),
    DatasetRecord("sysu_mm01", "SYSU-MM01", "exp/ and cam1..cam6/", _is_sysu_mm01, _sysu_mm01, "sysu", _index_sysu_mm01),
    DatasetRecord("regdb", "RegDB", "idx/, Visible/ and Thermal/", _is_regdb, _regdb, "regdb", _index_regdb),
)}
# name -> reader, every reader called as reader(root, options)
READERS: dict[str, Callable[[Path, DatasetOptions], VIDataset]] = {n: RECORDS[n].read for n in DATASETS}
assert set(RECORDS) == set(DATASETS)


def dataset_record(name: str) -> DatasetRecord:
    """The record of dataset ``name``; an unknown name lists the valid ones."""
    if name not in RECORDS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: auto, {', '.join(DATASETS)}")
    return RECORDS[name]


def load_dataset(name: str, root: str | Path, options: DatasetOptions | None = None, **fields: Any) -> VIDataset:
    """Read ``root`` as dataset ``name`` (or ``"auto"``: from the folder's layout). ``options`` (or its fields
    as keywords: ``trial``, ``mode``, ``shots``, ``skip_missing``, ``check_files``, ``splits``) say what to read;
    see :class:`DatasetOptions`."""
    try:
        opts = dataclasses.replace(options or DatasetOptions(), **fields)
    except TypeError:
        valid = [f.name for f in dataclasses.fields(DatasetOptions)]
        raise ValueError(f"unknown dataset option(s) {sorted(set(fields) - set(valid))}; valid: {valid}") from None
    if name == "auto":
        name = detect_dataset(root)
    return dataset_record(name).read(Path(root), opts)
