"""The dataset readers by name, and which one a folder's layout calls for.

``load_dataset("auto", root)`` reads HITSZ-VCM (``info/``), SYSU-MM01 (``exp/`` + ``cam1..cam6``) and
RegDB (``idx/`` + ``Visible``/``Thermal``) trees alike; every reader returns a :class:`VIDataset` whose
``protocol`` names its evaluation rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmft.data.errors import DatasetFormatError
from cmft.data.types import VIDataset

DATASETS = ("hitsz_vcm", "sysu_mm01", "regdb")


def detect_dataset(root: str | Path) -> str:
    """The dataset format of a folder, from its layout; a clear error when it is none of them."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset root is not a directory")
    if (root / "info").is_dir():
        return "hitsz_vcm"
    if (root / "exp").is_dir() and any((root / f"cam{c}").is_dir() for c in range(1, 7)):
        return "sysu_mm01"
    if (root / "idx").is_dir() and ((root / "Visible").is_dir() or (root / "Thermal").is_dir()):
        return "regdb"
    raise DatasetFormatError(
        f"{root}: not a known dataset layout: HITSZ-VCM has info/, SYSU-MM01 has exp/ and cam1..cam6/, "
        "RegDB has idx/, Visible/ and Thermal/"
    )


def load_dataset(name: str, root: str | Path, *, trial: int | None = None, mode: str = "all",
                 skip_missing: bool = False, **options: Any) -> VIDataset:
    """Read ``root`` as dataset ``name`` (or ``"auto"``). ``trial``: SYSU-MM01 gallery draw (default 0) or RegDB
    split (default 1); ``mode``: SYSU-MM01 all / indoor search; other ``options`` go to the reader."""
    if name == "auto":
        name = detect_dataset(root)
    if name == "hitsz_vcm":
        from cmft.data.datasets.hitsz_vcm import load_hitsz_vcm

        return load_hitsz_vcm(root, skip_missing=skip_missing, **options)
    if name == "sysu_mm01":
        from cmft.data.datasets.sysu_mm01 import load_sysu_mm01

        return load_sysu_mm01(root, mode=mode, trial=0 if trial is None else trial, **options)
    if name == "regdb":
        from cmft.data.datasets.regdb import load_regdb

        return load_regdb(root, trial=1 if trial is None else trial, **options)
    raise ValueError(f"unknown dataset {name!r}; choose one of: auto, {', '.join(DATASETS)}")
