"""``cmft eval`` (a checkpoint under its dataset's protocol) and ``cmft regdb-trials`` (RegDB's ten splits)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cmft.cli._common import _fail, _load_data, _metrics_table, _progress, _task_callback, _warn_pictures, console, err
from cmft.cli._runs import _evaluate_checkpoint, _run_training


def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="a cmft checkpoint (last.pt / best.pt of a run)")],
    data: Annotated[Path, typer.Option(help="dataset root: HITSZ-VCM, SYSU-MM01 or RegDB layout")],
    dataset: Annotated[str, typer.Option(help="auto (from the layout), hitsz_vcm, sysu_mm01, regdb, buptcampus or llcm")] = "auto",
    trial: Annotated[Optional[int], typer.Option(help="RegDB split 1..10 (default: the one the checkpoint trained on)")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="BUPTCampus: buptcampus (the authors' rule: nothing removed, the default) or buptcampus_m3reid (same id and camera removed)")] = None,
    trials: Annotated[int, typer.Option(help="SYSU-MM01, LLCM: gallery draws averaged (the protocol: 10)")] = 10,
    shots: Annotated[int, typer.Option(help="SYSU-MM01 gallery images per identity and camera: 1 (single-shot) or 10 (multi-shot)")] = 1,
    seq_len: Annotated[Optional[int], typer.Option(help="frames per test clip (default: the run's eval.seq_len)")] = None,
    batch_size: Annotated[int, typer.Option(help="clips per forward pass")] = 32,
    workers: Annotated[int, typer.Option(help="frame-decoding worker processes")] = 2,
    flip: Annotated[bool, typer.Option(help="average each clip with its mirror image")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print metrics as JSON")] = False,
    report: Annotated[Optional[Path], typer.Option(help="write a report (markdown, CMC curves, ranked lists) to this folder")] = None,
    rerank: Annotated[bool, typer.Option("--rerank", help="k-reciprocal re-ranking (Zhong et al. 2017) of the distances")] = False,
    k1: Annotated[int, typer.Option(help="re-ranking: k of the k-reciprocal neighbours")] = 20,
    k2: Annotated[int, typer.Option(help="re-ranking: neighbours averaged in the local query expansion")] = 6,
    lambda_value: Annotated[float, typer.Option("--lambda", help="re-ranking: weight of the original distance")] = 0.3,
) -> None:
    """Evaluate a checkpoint with the dataset's protocol: HITSZ-VCM and RegDB both directions; SYSU-MM01 all- and
    indoor-search, mean of the gallery draws. Rank-1/5/10/20, mAP, mINP."""
    from cmft.data.errors import DatasetFormatError
    from cmft.data.datasets.registry import detect_dataset
    from cmft.engine.checkpoint import load_checkpoint
    from cmft.evaluation.report import jsonable_metrics, write_summary_report
    from cmft.evaluation.retrieval import ClipSpec
    from cmft.evaluation.trials import evaluate_sysu_checkpoint

    try:
        ckpt = load_checkpoint(checkpoint)
        cfg = ckpt["config"]
        name = detect_dataset(data) if dataset == "auto" else dataset
    except (FileNotFoundError, ValueError) as e:  # DatasetFormatError is a ValueError
        _fail(str(e))
    try:
        spec = ClipSpec.from_config(cfg, seq_len=seq_len, batch_size=batch_size, workers=workers, flip=flip)
    except ValueError as e:  # a ConfigError: the checkpoint's saved config does not read
        _fail(f"{checkpoint}: {e}")
    title = f"{checkpoint} on {data}"
    reranking = None
    if rerank:
        from cmft.evaluation.reranking import Rerank

        if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
            _fail(f"re-ranking needs --k1 >= 1, --k2 >= 1 and 0 <= --lambda <= 1; got {k1}, {k2}, {lambda_value}")
        reranking = Rerank(k1, k2, lambda_value)
        title += f", re-ranked (k1 {k1}, k2 {k2}, lambda {lambda_value})"
    if name in ("llcm", "sysu_mm01"):  # the mean over gallery draws, queries embedded once
        from functools import partial

        from cmft.evaluation.trials import evaluate_llcm_checkpoint

        run = (partial(evaluate_llcm_checkpoint, ckpt, data, spec, trials) if name == "llcm"
               else partial(evaluate_sysu_checkpoint, ckpt, data, spec, trials, shots))
        try:
            with _progress() as p:
                results = run(progress=lambda n: _task_callback(p, f"embedding {n}"), rerank=reranking)
        except (DatasetFormatError, ValueError) as e:
            _fail(str(e))
        title += f" (mean of {trials} gallery draws" + (f", {'single' if shots == 1 else 'multi'}-shot)" if name == "sysu_mm01" else ")")
        if report is not None:
            _warn_pictures(write_summary_report(report, results, title).failed)
    else:
        ds = _load_data(data, name, splits=("test",), trial=trial if trial is not None else cfg["data"].get("trial"),
                        protocol=protocol)
        results = _evaluate_checkpoint(ckpt, ds, spec, report, title, rerank=reranking)
    if as_json:
        print(json.dumps(jsonable_metrics(results), indent=2))
    else:
        console.print(_metrics_table(results, title))
    if report is not None:
        err.print(f"report: {report / 'report.md'}")


def _parse_trials(trials: str) -> list[int]:
    """``1-10`` or ``1,3,5`` as sorted split numbers 1..10, or exit with what is wrong."""
    try:
        picks = sorted({t for part in trials.split(",") for t in (
            range(int(part.split("-")[0]), int(part.split("-")[1]) + 1) if "-" in part else [int(part)])})
    except ValueError:
        _fail(f"--trials must look like 1-10 or 1,3,5; got {trials!r}")
    if not picks or picks[0] < 1 or picks[-1] > 10:
        _fail(f"RegDB has splits 1..10; got {trials!r}")
    return picks


def regdb_trials(
    data: Annotated[Path, typer.Option(help="RegDB root (Visible/, Thermal/, idx/)")],
    out: Annotated[Path, typer.Option(help="folder for one run per trial (trial1/ ... trial10/) and summary.json")],
    config: Annotated[Optional[Path], typer.Option("-c", "--config", help="YAML config (e.g. configs/regdb/cmft_r50.yaml)")] = None,
    trials: Annotated[str, typer.Option(help="which splits, e.g. 1-10 or 1,3,5")] = "1-10",
    workers: Annotated[int, typer.Option(help="frame-decoding worker processes for evaluation")] = 2,
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted overrides for every trial, e.g. train.epochs=10")] = None,
) -> None:
    """RegDB's protocol: train one model per split, evaluate each on its own test split (both directions), report
    the mean and standard deviation. Finished trials are kept; an interrupted one resumes."""
    from cmft.engine.regdb import run_regdb_trials

    picks = _parse_trials(trials)
    try:
        done = run_regdb_trials(
            data, out, picks, config, overrides or [], workers, train_run=_run_training, score=_evaluate_checkpoint,
            log=err.print, on_trial=lambda t, best, m: console.print(_metrics_table(m, f"RegDB trial {t} ({best})")),
        )
    except ValueError as e:  # ConfigError and DatasetFormatError are ValueErrors
        _fail(str(e))
    titles = {"rgb2ir": "visible -> thermal", "ir2rgb": "thermal -> visible"}
    console.print(_metrics_table({titles[d]: m for d, m in done.summary.items()}, f"RegDB, mean of {len(picks)} trials"))
    err.print(f"summary: {done.path}")


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``regdb-trials`` to ``app``."""
    app.command("eval")(eval_cmd)
    app.command("regdb-trials")(regdb_trials)
