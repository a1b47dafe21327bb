"""``cmft demo``: the whole pipeline on a built-in default (synthetic data, training, evaluation, report, metrics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cmft.cli._common import _fail, _load_data, _metrics_table, _print_summary, _progress, _task_callback, console, err
from cmft.cli._runs import _evaluate_checkpoint, _run_training


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


def _demo_data(out: Path, data: Optional[Path], ids: int, test_ids: int, seed: int, ir_look: str) -> tuple[Path, bool]:
    """The dataset root (given, or the synthetic one in ``out/synth``, reused when its config matches) and whether
    it was generated just now."""
    if data is not None:
        return data, False
    from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic

    root = out / "synth"
    try:
        synth_cfg = SynthConfig(ids=ids, train_ids=ids - test_ids, seed=seed, ir_look=ir_look)
    except ValueError as e:
        _fail(str(e))
    if _same_synth(root, synth_cfg):
        err.print(f"reusing the synthetic dataset in {root}")
        return root, False
    with _progress() as p:
        generate_synthetic(root, synth_cfg, progress=_task_callback(p, "generating synthetic identities"))
    return root, True


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

    from cmft.config import ConfigError, load_config
    from cmft.evaluation.report import demo_context, write_public_metrics
    from cmft.evaluation.retrieval import ClipSpec, embed_test_sets, score_directions
    from cmft.models import GreyMotionDescriptor

    root, fresh_data = _demo_data(out, data, ids, test_ids, seed, ir_look)
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
    spec = ClipSpec.from_config(cfg)
    with _progress() as p:
        floor = score_directions(embed_test_sets(GreyMotionDescriptor(), dataset, spec, progress=lambda n: _task_callback(p, f"descriptor: {n}")))
    n_ids = len({t.pid for t in dataset.test_rgb})
    results: dict[str, dict] = {}
    bests: dict[str, Path] = {}
    for name, vcfg in configs.items():
        run_dir = out / ("run" if name == "cmft" else f"run_{name}")
        resume = _resumable_demo_run(run_dir, vcfg, fresh_data)
        err.print(f"{'resuming' if resume else 'training'} {name} ({vcfg.model.name}, fusion {vcfg.model.args.fusion or 'ccf'}) in {run_dir}")
        _run_training(vcfg, run_dir, resume, dataset)
        bests[name] = run_dir / ("best.pt" if (run_dir / "best.pt").exists() else "last.pt")
        if name != "cmft":
            results[name] = _evaluate_checkpoint(bests[name], dataset, spec, None, name)
    context = demo_context(floor, results, n_ids)
    results = {"cmft": _evaluate_checkpoint(bests["cmft"], dataset, spec, out / "report", f"CMFT demo: {cfg.model.name} on {root}", context),
               **results}
    write_public_metrics(out / "metrics.json", results, n_ids)
    for name, r in results.items():
        console.print(_metrics_table(r, f"{name} ({bests[name].name}) on {root}"))
    console.print(_metrics_table(floor, "training-free descriptor (floor)"))
    console.print(f"chance Rank-1 is about {100 / n_ids:.1f}%; metrics: {out / 'metrics.json'}; report: {out / 'report' / 'report.md'}")


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo)
