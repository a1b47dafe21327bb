"""Training and checkpoint evaluation as the commands run them: with progress bars, epoch lines and clean errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from cmft.cli._common import _fail, _progress, _task_callback, _warn_pictures, err


class _TrainReporter:
    """Progress bar per epoch (loss parts, lr, clips/s) and one printed line per finished epoch."""

    def __init__(self, progress: Any, epochs: int) -> None:
        self.progress, self.epochs, self.task, self.stage = progress, epochs, None, 1

    def epoch_start(self, epoch: int, stage: int, steps: int) -> None:
        self.stage = stage
        self.task = self.progress.add_task(f"epoch {epoch + 1}/{self.epochs} (stage {stage})", total=steps)

    def step(self, epoch: int, step: int, parts: dict[str, float], lr: float, clips_per_s: float) -> None:
        losses = " ".join(f"{k} {v:.3f}" for k, v in parts.items())
        self.progress.update(self.task, completed=step + 1,
                             description=f"epoch {epoch + 1}/{self.epochs} s{self.stage} | {losses} | lr {lr:.2e} | {clips_per_s:.1f} clips/s")

    def evaluating(self, epoch: int) -> None:
        self.progress.update(self.task, description=f"epoch {epoch + 1}/{self.epochs}: evaluating both directions")

    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        from cmft.data.types import DIRECTION_TITLES

        self.progress.remove_task(self.task)
        line = (f"epoch {epoch + 1}/{self.epochs} stage {record['stage']}: loss {record.get('loss_total', float('nan')):.4f}, "
                f"{record['clips_per_s']:.1f} clips/s, {record['seconds']:.0f} s")
        if "eval" in record:
            e = record["eval"]
            line += "".join(f" | {DIRECTION_TITLES[d]} R1 {100 * e[d]['cmc'][0]:.1f} mAP {100 * e[d]['mAP']:.1f}" for d in ("ir2rgb", "rgb2ir") if d in e)
        err.print(line)


def _run_training(config: Any, run_dir: Path, resume: bool, dataset: Any = None) -> Any:
    """Train (or resume) one run with a progress bar, or exit with its error."""
    from cmft.engine.trainer import TrainingDiverged, train

    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    try:
        with _progress() as p:
            reporter = _TrainReporter(p, config.train.epochs) if main_process else None
            return train(config, run_dir, resume=resume, reporter=reporter, dataset=dataset)
    except (TrainingDiverged, FileExistsError, FileNotFoundError, ValueError) as e:  # DatasetFormatError is a ValueError
        _fail(str(e))


def _evaluate_checkpoint(
    checkpoint: Path | dict, dataset: Any, spec: Any, report: Optional[Path] = None, title: str = "", extra: str = "",
    rerank: Any = None,
) -> dict[str, dict]:
    """Score both directions with a checkpoint (a path, or one already loaded) and optionally write the report;
    a report picture that fails is a warning, the metrics still count."""
    from cmft.engine.checkpoint import load_checkpoint
    from cmft.evaluation.report import write_report
    from cmft.evaluation.trials import evaluate_checkpoint

    try:
        ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    with _progress() as p:
        ev = evaluate_checkpoint(ckpt, dataset, spec, progress=lambda name: _task_callback(p, f"embedding {name}"),
                                 rerank=rerank)
    if report is not None:
        written = write_report(report, ev.results, dataset, ev.sets, title, ev.checkpoint, extra, ev.model, spec)
        _warn_pictures(written.failed)
    return ev.results
