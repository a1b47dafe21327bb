"""The ``cmft`` console script: one app, subcommands that import their heavy code lazily."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cmft import cli_search  # noqa: F401  (registers index, search)
from cmft import cli_track  # noqa: F401  (registers `track` and `track-eval` on the app)
from cmft import cli_serve  # noqa: F401  (registers serve)
from cmft import cli_export  # noqa: F401  (registers export)
from cmft._cli_app import _fail, _progress, _task_callback, app, console, err


def _load_data(root: Path, dataset: str = "auto", skip_missing: bool = False, check_files: bool = True,
               splits: tuple[str, ...] | None = None, trial: int | None = None, mode: str = "all"):  # noqa: ANN202
    """Load any supported dataset, or exit with its error. HITSZ-VCM: by default every split whose name list has
    frames (a ``cmft track`` export may hold only the test split)."""
    from cmft.data.datasets.hitsz_vcm import DatasetFormatError
    from cmft.data.datasets.registry import detect_dataset, load_dataset

    try:
        name = detect_dataset(root) if dataset == "auto" else dataset
        options: dict[str, Any] = {}
        if name == "hitsz_vcm":
            if splits is None:
                present = tuple(s for s in ("train", "test") if (root / "info" / f"{s}_name.txt").is_file()
                                and (root / "info" / f"{s}_name.txt").stat().st_size > 0)
                splits = present or ("train", "test")
            options = {"check_files": check_files, "splits": splits}
        elif name == "regdb":
            options = {"check_files": check_files}
        return load_dataset(name, root, trial=trial, mode=mode, skip_missing=skip_missing, **options)
    except (DatasetFormatError, ValueError) as e:
        _fail(str(e))


def _metrics_table(results: dict[str, dict], title: str) -> Table:
    """Rank-1/5/10/20, mAP, mINP per row; rows averaged over trials show ``mean ± sd`` for Rank-1 and mAP."""
    from cmft.data.types import DIRECTION_TITLES

    table = Table(title=title)
    for col in ("direction", "Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP", "queries"):
        table.add_column(col, justify="right" if col != "direction" else "left")
    for d, m in results.items():
        cmc = m["cmc"]
        ranks = [f"{100 * cmc[k - 1]:.2f}" if k <= len(cmc) else "-" for k in (1, 5, 10, 20)]
        mAP = f"{100 * m['mAP']:.2f}"
        if "mAP_std" in m:
            ranks[0] += f" ± {100 * m['cmc_std'][0]:.2f}"
            mAP += f" ± {100 * m['mAP_std']:.2f}"
        table.add_row(DIRECTION_TITLES.get(d, d), *ranks, mAP, f"{100 * m['mINP']:.2f}", str(m["num_valid_queries"]))
    return table


def _jsonable_metrics(results: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for d, m in results.items():
        out[d] = {"rank1": float(m["cmc"][0]), "cmc": [float(x) for x in m["cmc"]], "mAP": float(m["mAP"]),
                  "mINP": float(m["mINP"]), "num_valid_queries": int(m["num_valid_queries"])}
        if "mAP_std" in m:
            out[d].update(trials=int(m["trials"]), rank1_std=float(m["cmc_std"][0]), mAP_std=float(m["mAP_std"]),
                          mINP_std=float(m["mINP_std"]))
    return out


@app.command()
def info(
    root: Annotated[Path, typer.Argument(help="dataset root: HITSZ-VCM (info/), SYSU-MM01 (exp/, cam1..cam6) or RegDB (idx/, Visible, Thermal)")],
    dataset: Annotated[str, typer.Option(help="auto (from the layout), hitsz_vcm, sysu_mm01 or regdb")] = "auto",
    trial: Annotated[Optional[int], typer.Option(help="RegDB split 1..10 / SYSU-MM01 gallery draw 0..9")] = None,
    mode: Annotated[str, typer.Option(help="SYSU-MM01 search mode: all or indoor")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    skip_missing: Annotated[bool, typer.Option(help="drop frames listed but missing on disk")] = False,
    check_files: Annotated[bool, typer.Option(help="check that every listed frame exists")] = True,
) -> None:
    """Summarise a dataset: ids, tracklets and frames per modality and split (infrared->visible protocol)."""
    from cmft.data import dataset_summary

    ds = _load_data(root, dataset, skip_missing=skip_missing, check_files=check_files, trial=trial, mode=mode)
    if as_json:
        print(json.dumps(dataset_summary(ds), indent=2))
        return
    _print_summary(ds, f"{ds.name}: {root}")


def _print_summary(ds: Any, title: str) -> None:
    from cmft.data import dataset_summary

    summary = dataset_summary(ds)
    table = Table(title=title)
    for col in ("split", "ids", "RGB tracklets", "IR tracklets", "RGB frames", "IR frames"):
        table.add_column(col, justify="right" if col != "split" else "left")
    names = {"train": "train", "query": "query (IR)", "gallery": "gallery (RGB)"}
    for split, c in summary.items():
        table.add_row(names[split], *(f"{c[k]:,}" for k in ("ids", "rgb_tracklets", "ir_tracklets", "rgb_frames", "ir_frames")))
    console.print(table)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="output folder (created; must be empty or a previous synth output)")],
    ids: Annotated[int, typer.Option(help="total identities (train + test)")] = 80,
    train_ids: Annotated[Optional[int], typer.Option(help="training identities (default: half)")] = None,
    seed: Annotated[int, typer.Option(help="random seed: the same seed writes identical files")] = 0,
    cameras: Annotated[Optional[int], typer.Option(help="cameras, each with an RGB (day) and an IR (night) mode")] = None,
    height: Annotated[Optional[int], typer.Option(help="crop height in pixels")] = None,
    width: Annotated[Optional[int], typer.Option(help="crop width in pixels")] = None,
    workers: Annotated[Optional[int], typer.Option(help="worker processes (output does not depend on it)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="any other SynthConfig field, KEY=VALUE (see docs/synthetic.md)")] = [],
) -> None:
    """Generate the synthetic visible-infrared video dataset in the HITSZ-VCM layout."""
    from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic

    given = {"ids": ids, "train_ids": train_ids, "seed": seed, "cameras": cameras, "height": height, "width": width, "workers": workers}
    kwargs = {k: v for k, v in given.items() if v is not None}
    types = {f.name: f.type for f in fields(SynthConfig)}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            _fail(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(types)}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    try:
        config = SynthConfig(**kwargs)
        with _progress() as p:
            generate_synthetic(out, config, progress=_task_callback(p, "rendering identities"))
    except (ValueError, FileExistsError) as e:
        _fail(str(e))
    console.print(f"[green]wrote[/] {out}")
    info(out)


@app.command()
def baseline(
    root: Annotated[Path, typer.Argument(help="HITSZ-VCM dataset root (e.g. the output of `cmft synth`)")],
    seq_len: Annotated[int, typer.Option(help="frames per test clip")] = 6,
    height: Annotated[int, typer.Option(help="frame height fed to the descriptor")] = 128,
    width: Annotated[int, typer.Option(help="frame width")] = 64,
    workers: Annotated[int, typer.Option(help="frame-decoding worker processes")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="print metrics as JSON")] = False,
) -> None:
    """Score a training-free grey-level + motion descriptor on both HITSZ-VCM directions (the floor to beat)."""
    from cmft.evaluation.retrieval import ClipSpec, evaluate_directions
    from cmft.models import GreyMotionDescriptor

    ds = _load_data(root, splits=("test",))
    spec = ClipSpec(seq_len=seq_len, height=height, width=width, workers=workers)
    with _progress() as p:
        results = evaluate_directions(GreyMotionDescriptor(), ds, spec, progress=lambda name: _task_callback(p, f"embedding {name}"))
    if as_json:
        print(json.dumps(_jsonable_metrics(results), indent=2))
        return
    n_ids = len({t.pid for t in ds.gallery_rgb})
    console.print(_metrics_table(results, f"grey-motion descriptor (no training) on {root}"))
    console.print(f"chance Rank-1 is about {100 / n_ids:.1f}% ({n_ids} gallery identities)")


@app.command()
def profile(
    model: Annotated[str, typer.Option(help="registered model whose backbone the variants share")] = "cmft_r50",
    seq_len: Annotated[int, typer.Option(help="frames per clip")] = 6,
    height: Annotated[int, typer.Option(help="frame height")] = 256,
    width: Annotated[int, typer.Option(help="frame width")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    out: Annotated[Optional[Path], typer.Option(help="also write the table as markdown here")] = None,
) -> None:
    """Parameters and FLOPs of every paper Table 2 / Table 3 fusion variant, beside the paper's numbers."""
    from cmft.models import list_models
    from cmft.models.profile import profile_markdown, profile_variants

    if model not in list_models():
        _fail(f"unknown model {model!r}; available: {', '.join(list_models())}")
    with err.status("counting parameters and FLOPs (fvcore) for 10 variants..."):
        rows = profile_variants(model, seq_len, height, width)
    setting = f"{model}, {seq_len} frames of {height}x{width} per modality"
    if out is not None:
        out.write_text(profile_markdown(rows, setting))
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    table = Table(title=f"fusion variants: {setting} (FLOPs = multiply-adds)")
    for col in ("variant", "params total", "params fusion", "Conv6 CCF", "FLOPs total", "FLOPs fusion", "paper params", "paper FLOPs"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in rows:
        conv6 = "-" if r.params_ccf_conv6 is None else f"{r.params_ccf_conv6 / 1e6:.2f}M"
        table.add_row(r.variant, f"{r.params_total / 1e6:.2f}M", f"{r.params_fusion / 1e6:.2f}M", conv6,
                      f"{r.flops_total / 1e9:.2f}G", f"{r.flops_fusion / 1e9:.3f}G", r.paper_params, r.paper_flops)
    console.print(table)


def _same_synth(root: Path, config: Any) -> bool:
    """Whether ``root`` already holds the complete synthetic dataset of this config (the demo reuses it)."""
    try:
        saved = json.loads((root / "synth_config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and saved.get("complete") is True and saved.get("config") == config.output_fields()


def _resumable_demo_run(run_dir: Path, cfg: Any, fresh_data: bool = False) -> bool:
    """Whether ``run_dir`` holds a demo run of exactly this config to resume; a run of another recipe or
    data (an older version, other overrides, regenerated data) is cleared so it cannot be scored as this one."""
    import shutil

    from cmft.engine.checkpoint import load_checkpoint

    last = run_dir / "last.pt"
    if not last.exists():
        return False
    try:
        same = not fresh_data and load_checkpoint(last)["config"] == cfg.to_dict()
    except (ValueError, KeyError, OSError):
        same = False
    if not same:
        err.print(f"{run_dir} holds a run of another recipe or data: training afresh")
        shutil.rmtree(run_dir)
    return same


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
    from cmft.engine.trainer import TrainingDiverged, train

    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    try:
        with _progress() as p:
            reporter = _TrainReporter(p, config.train.epochs) if main_process else None
            return train(config, run_dir, resume=resume, reporter=reporter, dataset=dataset)
    except (TrainingDiverged, FileExistsError, FileNotFoundError, ValueError) as e:  # DatasetFormatError is a ValueError
        _fail(str(e))


@app.command("train")
def train_cmd(
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted overrides, e.g. optim.lr=0.05 train.epochs=10")] = None,
    config: Annotated[Optional[Path], typer.Option("-c", "--config", help="YAML config (configs/...); default: built-in defaults")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder (default: runs/<config name>)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="resume the run in this folder from its last.pt")] = None,
) -> None:
    """Train CMFT (two-stage progressive learning); checkpoints, logs and the resolved config go to the run folder."""
    from cmft.config import ConfigError, load_config

    try:
        cfg = load_config(config, overrides or [])
    except ConfigError as e:
        _fail(str(e))
    run_dir = resume or out or Path("runs") / (config.stem if config else "default")
    result = _run_training(cfg, run_dir, resume is not None)
    if os.environ.get("RANK", "0") != "0":
        return
    console.print(f"[green]done[/]: {result.epochs_done} epochs in {run_dir}")
    if result.best is not None:
        console.print(_metrics_table({d: result.best[d] for d in ("ir2rgb", "rgb2ir") if d in result.best}, f"best checkpoint (epoch {result.best['epoch'] + 1})"))


def _evaluate_checkpoint(
    checkpoint: Path | dict, dataset: Any, spec: Any, report: Optional[Path], title: str, extra: str = ""
) -> dict[str, dict]:
    """Embed both test sets with a checkpoint's model (a path, or a checkpoint already loaded), score both
    directions, optionally write the report."""
    import torch

    from cmft.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from cmft.evaluation.retrieval import embed_test_sets, score_directions

    try:
        ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model_from_checkpoint(ckpt, device)
    with _progress() as p:
        sets = embed_test_sets(model.embed, dataset, spec, device, progress=lambda name: _task_callback(p, f"embedding {name}"))
    results = score_directions(sets, protocol=dataset.protocol)
    if report is not None:
        _write_report(report, results, dataset, sets, title, ckpt, extra, model, spec)
    return results


def _write_report(out: Path, results: dict[str, dict], dataset: Any, sets: dict, title: str, ckpt: Optional[dict] = None,
                  extra: str = "", model: Any = None, spec: Any = None) -> Path:
    from cmft.data.types import DIRECTION_TITLES
    from cmft.evaluation.report import metrics_markdown, plot_cmc, ranked_list_grid, top_k

    out.mkdir(parents=True, exist_ok=True)
    plot_cmc(results, out / "cmc.png", title)
    pictures = []
    for d in results:
        q, g = (sets["ir"], sets["rgb"]) if d == "ir2rgb" else (sets["rgb"], sets["ir"])
        qt, gt = dataset.split(d)
        picks = list(range(0, len(qt), max(len(qt) // 6, 1)))[:6]
        ranked = top_k(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, picks, k=8, protocol=dataset.protocol)
        ranked_list_grid(qt, gt, ranked, picks, out / f"ranked_{d}.png")
        pictures.append(f"### {DIRECTION_TITLES[d]}\n\n![ranked list {d}](ranked_{d}.png)\n")
    pictures += _report_visuals(out, dataset, sets, model, spec)
    (out / "metrics.json").write_text(json.dumps(_jsonable_metrics(results), indent=2))
    lines = [f"# {title}", "", metrics_markdown(results), "", extra, "![CMC curves](cmc.png)", "",
             "## Ranked lists", "", "Each row: a query (grey border), then its 8 best matches in the other modality, "
             "green when the identity is right, red when wrong (gallery items the protocol removes for that query are "
             "excluded).", "", *pictures]
    if ckpt is not None:
        lines += ["## Model", "", f"`{ckpt['model_name']}` trained {ckpt['epoch'] + 1} epochs, arguments `{ckpt['model_args']}`."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def _report_visuals(out: Path, dataset: Any, sets: dict, model: Any, spec: Any) -> list[str]:
    """The modality-gap map and, for a CCF model, the cross-attention of one true infrared/visible pair."""
    from cmft.evaluation.visuals import attention_figure, cross_attention_maps, embedding_plot, test_clip

    parts = []
    feats = {m: sets[m].feats.numpy() for m in ("rgb", "ir")}
    pids = {m: sets[m].pids for m in ("rgb", "ir")}
    try:
        embedding_plot(feats, pids, out / "embedding.png")
        parts.append("## Embedding space\n\nIdentities (colour) in both modalities (circle visible, triangle infrared): "
                     "same-colour markers far apart are the modality gap.\n\n![embedding](embedding.png)\n")
    except ValueError:
        pass  # no identity in both modalities (e.g. an unlabelled export)
    if model is not None and spec is not None and getattr(model, "fusion", None) is not None:
        gallery_by_pid = {t.pid: t for t in reversed(dataset.gallery_rgb)}
        pair = next(((q, gallery_by_pid[q.pid]) for q in dataset.query_ir if q.pid in gallery_by_pid), None)
        if pair is not None:
            device = next(model.parameters()).device
            ir = test_clip(pair[0].paths, spec.seq_len, spec.height, spec.width).to(device)
            rgb = test_clip(pair[1].paths, spec.seq_len, spec.height, spec.width).to(device)
            try:
                maps = cross_attention_maps(model, rgb, ir)
            except ValueError:
                maps = {}
            if maps:
                attention_figure(maps, rgb, ir, out / "attention.png", title=f"CCF cross-attention, identity {pair[0].pid}")
                parts.append("## Cross-attention\n\nA visible clip and an infrared clip of the same person: where the "
                             "visible tokens attend in the infrared frames (CCF, eq. 5).\n\n![attention](attention.png)\n")
    return parts


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="a cmft checkpoint (last.pt / best.pt of a run)")],
    data: Annotated[Path, typer.Option(help="dataset root: HITSZ-VCM, SYSU-MM01 or RegDB layout")],
    dataset: Annotated[str, typer.Option(help="auto (from the layout), hitsz_vcm, sysu_mm01 or regdb")] = "auto",
    trial: Annotated[Optional[int], typer.Option(help="RegDB split 1..10 (default: the one the checkpoint trained on)")] = None,
    trials: Annotated[int, typer.Option(help="SYSU-MM01: gallery draws averaged (the protocol: 10)")] = 10,
    shots: Annotated[int, typer.Option(help="SYSU-MM01 gallery images per identity and camera: 1 (single-shot) or 10 (multi-shot)")] = 1,
    seq_len: Annotated[Optional[int], typer.Option(help="frames per test clip (default: the run's eval.seq_len)")] = None,
    batch_size: Annotated[int, typer.Option(help="clips per forward pass")] = 32,
    workers: Annotated[int, typer.Option(help="frame-decoding worker processes")] = 2,
    flip: Annotated[bool, typer.Option(help="average each clip with its mirror image")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print metrics as JSON")] = False,
    report: Annotated[Optional[Path], typer.Option(help="write a report (markdown, CMC curves, ranked lists) to this folder")] = None,
) -> None:
    """Evaluate a checkpoint with the dataset's protocol: HITSZ-VCM and RegDB both directions; SYSU-MM01 all- and
    indoor-search, mean of the gallery draws. Rank-1/5/10/20, mAP, mINP."""
    from cmft.data.datasets.hitsz_vcm import DatasetFormatError
    from cmft.data.datasets.registry import detect_dataset
    from cmft.engine.checkpoint import load_checkpoint
    from cmft.evaluation.retrieval import ClipSpec

    try:
        ckpt = load_checkpoint(checkpoint)
        cfg = ckpt["config"]
        name = detect_dataset(data) if dataset == "auto" else dataset
    except (FileNotFoundError, ValueError) as e:  # DatasetFormatError is a ValueError
        _fail(str(e))
    spec = ClipSpec(seq_len or cfg["eval"]["seq_len"], cfg["data"]["height"], cfg["data"]["width"], batch_size, workers, flip)
    title = f"{checkpoint} on {data}"
    if name == "sysu_mm01":
        try:
            results = _evaluate_sysu(ckpt, data, spec, trials, shots)
        except (DatasetFormatError, ValueError) as e:
            _fail(str(e))
        title += f" (mean of {trials} gallery draws, {'single' if shots == 1 else 'multi'}-shot)"
        if report is not None:
            from cmft.evaluation.report import metrics_markdown, plot_cmc

            report.mkdir(parents=True, exist_ok=True)
            plot_cmc(results, report / "cmc.png", title)
            (report / "metrics.json").write_text(json.dumps(_jsonable_metrics(results), indent=2))
            (report / "report.md").write_text(f"# {title}\n\n{metrics_markdown(results)}\n\n![CMC curves](cmc.png)\n")
    else:
        ds = _load_data(data, name, splits=("test",), trial=trial if trial is not None else cfg["data"].get("trial"))
        results = _evaluate_checkpoint(ckpt, ds, spec, report, title)
    if as_json:
        print(json.dumps(_jsonable_metrics(results), indent=2))
    else:
        console.print(_metrics_table(results, title))
    if report is not None:
        err.print(f"report: {report / 'report.md'}")


def _evaluate_sysu(ckpt: dict, root: Path, spec: Any, trials: int, shots: int) -> dict[str, dict]:
    """SYSU-MM01 all-search and indoor-search rows (``{"all-search": mean metrics, "indoor-search": ...}``)."""
    import torch

    from cmft.engine.checkpoint import model_from_checkpoint
    from cmft.evaluation.trials import evaluate_sysu

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model_from_checkpoint(ckpt, device)
    with _progress() as p:
        out = evaluate_sysu(model.embed, root, spec, device, trials=range(trials), shots=shots,
                            progress=lambda name: _task_callback(p, f"embedding {name}"))
    return {f"{mode}-search": r["mean"] for mode, r in out.items()}


@app.command("regdb-trials")
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
    from cmft.atomic import write_text_atomic
    from cmft.config import ConfigError, load_config
    from cmft.engine.checkpoint import load_checkpoint
    from cmft.evaluation.retrieval import ClipSpec
    from cmft.evaluation.trials import aggregate_trials

    try:
        picks = sorted({t for part in trials.split(",") for t in (
            range(int(part.split("-")[0]), int(part.split("-")[1]) + 1) if "-" in part else [int(part)])})
    except ValueError:
        _fail(f"--trials must look like 1-10 or 1,3,5; got {trials!r}")
    if not picks or picks[0] < 1 or picks[-1] > 10:
        _fail(f"RegDB has splits 1..10; got {trials!r}")
    per_trial: dict[int, dict[str, dict]] = {}
    for t in picks:
        try:
            cfg = load_config(config, [*(overrides or []), f"data.root={data}", "data.dataset=regdb", f"data.trial={t}"])
        except ConfigError as e:
            _fail(str(e))
        ds = _load_data(data, "regdb", trial=t)
        run_dir = out / f"trial{t}"
        last = run_dir / "last.pt"
        done = last.exists() and load_checkpoint(last)["epoch"] + 1 >= cfg.train.epochs
        if done:
            err.print(f"trial {t}: already trained in {run_dir}")
        else:
            err.print(f"trial {t}: {'resuming' if last.exists() else 'training'} in {run_dir}")
            _run_training(cfg, run_dir, last.exists(), ds)
        best = run_dir / ("best.pt" if (run_dir / "best.pt").exists() else "last.pt")
        spec = ClipSpec(cfg.eval.seq_len, cfg.data.height, cfg.data.width, cfg.eval.batch_size, workers, cfg.eval.flip)
        per_trial[t] = _evaluate_checkpoint(best, ds, spec, None, f"trial {t}")
        console.print(_metrics_table(per_trial[t], f"RegDB trial {t} ({best})"))
    summary = {d: aggregate_trials([r[d] for r in per_trial.values()]) for d in ("rgb2ir", "ir2rgb")}
    titles = {"rgb2ir": "visible -> thermal", "ir2rgb": "thermal -> visible"}
    console.print(_metrics_table({titles[d]: m for d, m in summary.items()}, f"RegDB, mean of {len(picks)} trials"))
    payload = {"trials": picks, "mean": _jsonable_metrics(summary),
               "per_trial": {str(t): _jsonable_metrics(r) for t, r in per_trial.items()}}
    write_text_atomic(out / "summary.json", json.dumps(payload, indent=2))
    err.print(f"summary: {out / 'summary.json'}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder for the data, the run(s), the report and metrics.json")] = Path("out/demo"),
    data: Annotated[Optional[Path], typer.Option(help="use this HITSZ-VCM dataset instead of generating the synthetic one")] = None,
    ids: Annotated[int, typer.Option(help="identities of the generated synthetic dataset")] = 200,
    test_ids: Annotated[int, typer.Option(help="of which test identities (the rest train)")] = 40,
    seed: Annotated[int, typer.Option(help="seed of the synthetic dataset and of training")] = 0,
    ir_look: Annotated[str, typer.Option(help="IR look of the generated data: nir (night near-infrared) or thermal")] = "nir",
    compare: Annotated[bool, typer.Option("--compare", help="also train the no-fusion baseline the same way and compare")] = False,
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted overrides of the demo config, e.g. train.epochs=5")] = None,
) -> None:
    """The whole pipeline on a built-in default: synthetic data, two-stage CMFT training, evaluation, report,
    and ``OUT/metrics.json`` (per variant and direction: Rank-1/5/10/20, mAP, mINP in percent)."""
    from importlib import resources

    from cmft.atomic import write_text_atomic
    from cmft.config import ConfigError, load_config
    from cmft.evaluation.report import metrics_markdown, public_metrics
    from cmft.evaluation.retrieval import ClipSpec, embed_test_sets, score_directions
    from cmft.models import GreyMotionDescriptor

    root = data or out / "synth"
    fresh_data = False
    if data is None:
        from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic

        try:
            synth_cfg = SynthConfig(ids=ids, train_ids=ids - test_ids, seed=seed, ir_look=ir_look)
        except ValueError as e:
            _fail(str(e))
        if _same_synth(root, synth_cfg):
            err.print(f"reusing the synthetic dataset in {root}")
        else:
            with _progress() as p:
                generate_synthetic(root, synth_cfg, progress=_task_callback(p, "generating synthetic identities"))
            fresh_data = True
    dataset = _load_data(root)
    _print_summary(dataset, f"hitsz_vcm: {root}")
    config_file = resources.files("cmft") / "configs" / "demo_cpu.yaml"
    variants = {"cmft": [], "no_fusion": ["model.args.fusion=none"]} if compare else {"cmft": []}
    configs = {}
    for name, extra in variants.items():
        try:
            with resources.as_file(config_file) as path:
                configs[name] = load_config(path, [f"data.root={root}", f"train.seed={seed}", *(overrides or []), *extra])
        except ConfigError as e:
            _fail(str(e))
    cfg = configs["cmft"]
    spec = ClipSpec(cfg.eval.seq_len, cfg.data.height, cfg.data.width, cfg.eval.batch_size, cfg.data.workers)
    with _progress() as p:
        floor = score_directions(embed_test_sets(GreyMotionDescriptor(), dataset, spec, progress=lambda n: _task_callback(p, f"descriptor: {n}")))
    n_ids = len({t.pid for t in dataset.gallery_rgb})
    results: dict[str, dict] = {}
    bests: dict[str, Path] = {}
    for name, vcfg in configs.items():
        run_dir = out / ("run" if name == "cmft" else f"run_{name}")
        resume = _resumable_demo_run(run_dir, vcfg, fresh_data)
        err.print(f"{'resuming' if resume else 'training'} {name} ({vcfg.model.name}, fusion {vcfg.model.args.get('fusion', 'ccf')}) in {run_dir}")
        _run_training(vcfg, run_dir, resume, dataset)
        bests[name] = run_dir / ("best.pt" if (run_dir / "best.pt").exists() else "last.pt")
        if name != "cmft":
            results[name] = _evaluate_checkpoint(bests[name], dataset, spec, None, name)
    context = ("For scale: chance Rank-1 is about {:.1f}% ({} gallery identities); a training-free grey-level + motion "
               "descriptor scores:\n\n{}\n").format(100 / n_ids, n_ids, metrics_markdown(floor))
    for name in results:
        context += f"\nThe {name.replace('_', ' ')} baseline, trained the same way:\n\n{metrics_markdown(results[name])}\n"
    results = {"cmft": _evaluate_checkpoint(bests["cmft"], dataset, spec, out / "report", f"CMFT demo: {cfg.model.name} on {root}", context),
               **results}
    payload = {name: public_metrics(r, n_ids) for name, r in results.items()}
    write_text_atomic(out / "metrics.json", json.dumps(payload, indent=2) + "\n")
    for name, r in results.items():
        console.print(_metrics_table(r, f"{name} ({bests[name].name}) on {root}"))
    console.print(_metrics_table(floor, "training-free descriptor (floor)"))
    console.print(f"chance Rank-1 is about {100 / n_ids:.1f}%; metrics: {out / 'metrics.json'}; report: {out / 'report' / 'report.md'}")


def main() -> None:
    app()
