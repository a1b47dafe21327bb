"""RegDB's protocol as a loop of trainings: one model trained and scored per split, then the mean and standard
deviation over the splits (``cmft regdb-trials``). It trains, so it lives in the engine; the scoring is
:mod:`cmft.evaluation.trials`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmft.data.types import VIDataset
from cmft.evaluation.retrieval import ClipSpec
from cmft.evaluation.trials import aggregate_trials, evaluate_checkpoint

REGDB_SPLITS = range(1, 11)
TrainRun = Callable[[Any, Path, bool, VIDataset], object]
"""``(config, run folder, resume, dataset) -> anything``: trains (or resumes) one run."""
CheckpointScore = Callable[[Path, VIDataset, ClipSpec], dict[str, dict]]
"""``(checkpoint, dataset, spec) -> metrics per direction``."""


@dataclass
class RegdbTrials:
    """Every trial's metrics, their mean / standard deviation per direction, and the ``summary.json`` written."""

    picks: list[int]
    per_trial: dict[int, dict[str, dict]]
    summary: dict[str, dict[str, Any]]
    path: Path


def _train_run(cfg: Any, run_dir: Path, resume: bool, dataset: VIDataset) -> object:
    from cmft.engine.trainer import train

    return train(cfg, run_dir, resume=resume, dataset=dataset)


def _score(checkpoint: Path, dataset: VIDataset, spec: ClipSpec) -> dict[str, dict]:
    return evaluate_checkpoint(checkpoint, dataset, spec).results


def run_regdb_trials(
    data: str | Path,
    out: str | Path,
    picks: Sequence[int],
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    workers: int = 2,
    train_run: TrainRun | None = None,
    score: CheckpointScore | None = None,
    log: Callable[[str], None] | None = None,
    on_trial: Callable[[int, Path, dict[str, dict]], None] | None = None,
) -> RegdbTrials:
    """RegDB's protocol: for each split in ``picks`` train one model in ``out/trial<N>/`` (a finished run is kept,
    an interrupted one resumed), score its best checkpoint on its own test split (both directions), then write
    the mean and standard deviation to ``out/summary.json``.

    ``train_run`` and ``score`` replace the plain training and evaluation (e.g. with progress bars); ``log`` gets
    a line per trial before its training, ``on_trial(trial, checkpoint, metrics)`` each trial's result. Errors
    (ConfigError, DatasetFormatError, FileNotFoundError, ValueError, TrainingDiverged) propagate.
    """
    from cmft.atomic import write_text_atomic
    from cmft.config import load_config
    from cmft.data.datasets.registry import load_dataset
    from cmft.models.checkpoint import load_checkpoint
    from cmft.evaluation.report import jsonable_metrics

    data, out = Path(data), Path(out)
    picks = sorted(set(picks))
    if not picks or picks[0] < REGDB_SPLITS.start or picks[-1] >= REGDB_SPLITS.stop:
        raise ValueError(f"RegDB has splits 1..10; got {picks}")
    train_run, score, log = train_run or _train_run, score or _score, log or (lambda line: None)
    per_trial: dict[int, dict[str, dict]] = {}
    for t in picks:
        cfg = load_config(config, [*overrides, f"data.root={data}", "data.dataset=regdb", f"data.trial={t}"])
        ds = load_dataset("regdb", data, trial=t, check_files=True)
        run_dir = out / f"trial{t}"
        last = run_dir / "last.pt"
        done = last.exists() and load_checkpoint(last)["epoch"] + 1 >= cfg.train.epochs
        if done:
            log(f"trial {t}: already trained in {run_dir}")
        else:
            log(f"trial {t}: {'resuming' if last.exists() else 'training'} in {run_dir}")
            train_run(cfg, run_dir, last.exists(), ds)
        best = run_dir / ("best.pt" if (run_dir / "best.pt").exists() else "last.pt")
        spec = ClipSpec.from_config(cfg, workers=workers)
        per_trial[t] = score(best, ds, spec)
        if on_trial is not None:
            on_trial(t, best, per_trial[t])
    summary = {d: aggregate_trials([r[d] for r in per_trial.values()]) for d in ("rgb2ir", "ir2rgb")}
    payload = {"trials": picks, "mean": jsonable_metrics(summary),
               "per_trial": {str(t): jsonable_metrics(r) for t, r in per_trial.items()}}
    write_text_atomic(out / "summary.json", json.dumps(payload, indent=2))
    return RegdbTrials(picks, per_trial, summary, out / "summary.json")
