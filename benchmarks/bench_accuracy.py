"""The paper's ablations on synthetic video at CPU scale: Table 2 (fusion), tracklet length, Table 5 (MSRL / MDL).

Every variant trains the demo recipe (``cmft demo``'s config) at one fixed, small budget on one
synthetic near-infrared set, for several seeds, and reports both directions' Rank-1 and mAP as mean
+- sd. Each finished run is kept (``OUT/results/<settings hash>__s<seed>.json``, written atomically),
so an interrupted benchmark resumes where it stopped; ``--write-md`` puts the table and a plot in
BENCHMARKS.md.

    python benchmarks/bench_accuracy.py --out out/bench_accuracy                # Table 2 and tracklet length, 3 seeds
    python benchmarks/bench_accuracy.py --studies table5 levers --seeds 3 --write-md

A result is keyed by its seed and a hash of everything that decides it (the data: a synthetic set's
config, else its folder; the resolved run config), so a rerun with another budget never reuses old
numbers, a moved output folder still resumes, and variants that resolve to the same run (the levers'
reference, Table 2's CCF dual-branch, T=4) train once.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np

from markdown_section import write_section  # noqa: E402  (beside this script)

# (study, variant) -> overrides of the demo config; each study's first variant is its reference
STUDIES: dict[str, dict[str, list[str]]] = {
    "table2": {
        "no fusion": ["model.args.fusion=none"],
        "score average": ["model.args.fusion=score_avg"],
        "score multiplication": ["model.args.fusion=score_mul"],
        "concatenation": ["model.args.fusion=concat"],
        "CCF single-branch": ["model.args.fusion=ccf", "model.args.branches=1"],
        "CCF dual-branch": ["model.args.fusion=ccf", "model.args.branches=2"],
    },
    "length": {f"T={t}": [f"data.seq_len={t}", f"eval.seq_len={t}"] for t in (1, 2, 4, 8)},
    "table5": {
        "MSRL euclidean + MDL dynamic": [],
        "MSRL cosine": ["loss.msrl_metric=cosine"],
        "MDL hard": ["loss.mdl_negatives=hard"],
        "MDL all": ["loss.mdl_negatives=all"],
        "no MSRL / MDL": ["loss.msrl_weight=0", "loss.mdl_weight=0"],
    },
    # the demo recipe with one lever against the modality gap taken out (or added) at a time
    "levers": {
        "demo recipe": [],
        "no grey RGB clips": ["data.gray_p=0"],
        "+ channel exchange p=0.5": ["data.channel_p=0.5"],
        "no cross-modal triplet": ["loss.xmodal_weight=0"],
        "independent streams": ["model.args.share_from=null"],
        "linear classifier": ["model.args.classifier=linear"],
        "+ GeM pooling": ["model.args.pool=gem"],
        "no L_Cross in stage 2": ["loss.stage2_cross_weight=0"],
        "streams at lr x 0.1": ["optim.backbone_lr_mult=0.1"],
    },
}
TITLES = {"table2": "Paper Table 2: fusion", "length": "Tracklet length (frames per clip)",
          "table5": "Paper Table 5: MSRL and MDL choices", "levers": "Levers against the modality gap (one at a time)"}
DIRS = (("ir2rgb", "IR->RGB"), ("rgb2ir", "RGB->IR"))


def _resolved(data: Path, seed: int, budget: list[str], overrides: list[str]) -> tuple[object, str]:
    """The run's config and the key of its result: a hash of everything that decides the result (the data,
    named by a synthetic set's config so that the key survives a move, and the resolved config without its
    paths), so two variants that resolve to the same run (the levers' reference and Table 2's CCF
    dual-branch, say) share one result."""
    from cmft.config import Config, load_config

    cfg_path = Path(str(resources.files("cmft") / "configs" / "demo_cpu.yaml"))
    cfg = load_config(cfg_path, [f"data.root={data}", f"train.seed={seed}", "train.eval_every=0", *budget, *overrides])
    marker = Path(data) / "synth_config.json"
    data_id = json.loads(marker.read_text()).get("config") if marker.exists() else str(Path(data).resolve())
    from cmft.models.registry import model_defaults

    settings = _changed(cfg.to_dict(), Config().to_dict())
    settings.get("data", {}).pop("root", None)
    # the model as built: the variant's own arguments under the overrides (fusion=ccf on a CCF variant changes nothing)
    settings.setdefault("model", {})["args"] = {**model_defaults(cfg.model.name), **cfg.model.args.overrides()}
    digest = hashlib.sha1(json.dumps([data_id, settings], sort_keys=True).encode()).hexdigest()[:12]
    return cfg, f"{digest}__s{seed}"


def _changed(values: dict, defaults: dict) -> dict:
    """The leaves of a config dict that differ from the defaults (a field added later, at its default, leaves
    the key of every earlier result unchanged)."""
    out = {}
    for k, v in values.items():
        d = defaults.get(k) if isinstance(defaults, dict) else None
        if isinstance(v, dict):
            sub = _changed(v, d if isinstance(d, dict) else {})
            if sub:
                out[k] = sub
        elif v != d and not (v is None and k not in (defaults or {})):
            out[k] = v
    return out


def rekey(data: Path, out: Path, budget: list[str]) -> int:
    """Rename every result file to the key its recorded (study, variant, seed) resolves to today; returns the count."""
    moved = 0
    for f in sorted((out / "results").glob("*.json")):
        row = json.loads(f.read_text())
        if row.get("study") not in STUDIES or row.get("variant") not in STUDIES[row["study"]]:
            continue
        _, key = _resolved(data, int(row["seed"]), budget, STUDIES[row["study"]][row["variant"]])
        target = f.with_name(f"{key}.json")
        if target != f:
            if target.exists():
                f.unlink()  # the same run, already under its key
            else:
                f.rename(target)
            moved += 1
    return moved


def run_one(data: Path, out: Path, study: str, variant: str, seed: int, budget: list[str], train_missing: bool = True) -> dict | None:
    """Train and evaluate one (variant, seed) unless a run with the same settings has a result; returns the result
    (``None`` for a missing one when ``train_missing`` is off)."""
    from cmft.atomic import write_text_atomic
    from cmft.data.datasets.registry import load_dataset
    from cmft.engine.trainer import train

    cfg, key = _resolved(data, seed, budget, STUDIES[study][variant])
    result_file = out / "results" / f"{key}.json"
    if result_file.exists():
        return {**json.loads(result_file.read_text()), "study": study, "variant": variant}
    if not train_missing:
        return None
    run_dir = out / "runs" / key
    resume = (run_dir / "last.pt").exists()  # an interrupted run continues from its last finished epoch
    t0 = time.perf_counter()
    res = train(cfg, run_dir, resume=resume, dataset=load_dataset("auto", data))
    last = res.last_eval
    row = {"study": study, "variant": variant, "seed": seed, "seconds": time.perf_counter() - t0,
           **{f"{d}_{k}": 100 * float(last[d]["cmc"][0] if k == "rank1" else last[d][k]) for d, _ in DIRS for k in ("rank1", "mAP")}}
    result_file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(result_file, json.dumps(row, indent=2))
    shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints of finished runs are not kept (hundreds of MB each)
    return row


def summarise(rows: list[dict]) -> dict[tuple[str, str], dict[str, tuple[float, float, int]]]:
    """(study, variant) -> metric -> (mean, sd over seeds, number of seeds)."""
    out: dict[tuple[str, str], dict[str, tuple[float, float, int]]] = {}
    for r in rows:
        out.setdefault((r["study"], r["variant"]), {})
    for key in out:
        sel = [r for r in rows if (r["study"], r["variant"]) == key]
        for m in (f"{d}_{k}" for d, _ in DIRS for k in ("rank1", "mAP")):
            v = np.array([r[m] for r in sel])
            out[key][m] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v))
    return out


def plot(summary: dict, studies: list[str], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(studies), 3.8), dpi=110)
    FigureCanvasAgg(fig)
    for i, study in enumerate(studies):
        ax = fig.add_subplot(1, len(studies), i + 1)
        variants = [v for v in STUDIES[study] if (study, v) in summary]
        x = np.arange(len(variants))
        for j, (d, title) in enumerate(DIRS):
            mean = [summary[(study, v)][f"{d}_mAP"][0] for v in variants]
            sd = [summary[(study, v)][f"{d}_mAP"][1] for v in variants]
            ax.bar(x + (j - 0.5) * 0.38, mean, 0.38, yerr=sd, capsize=3, label=f"{title} mAP")
        ax.set_xticks(x, variants, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("mAP (%)")
        ax.set_title(TITLES[study], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def markdown(summary: dict, studies: list[str], meta: str) -> str:
    lines = [meta, ""]
    for study in studies:
        lines += [f"**{TITLES[study]}**", "", "| variant | seeds | IR->RGB Rank-1 | IR->RGB mAP | RGB->IR Rank-1 | RGB->IR mAP |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for v in STUDIES[study]:
            if (study, v) not in summary:
                continue
            s = summary[(study, v)]
            cells = [f"{s[f'{d}_{k}'][0]:.1f}" + (f" ± {s[f'{d}_{k}'][1]:.1f}" if s[f'{d}_{k}'][2] > 1 else "")
                     for d, _ in DIRS for k in ("rank1", "mAP")]
            lines.append(f"| {v} | {s['ir2rgb_mAP'][2]} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/bench_accuracy"))
    ap.add_argument("--data", type=Path, default=None, help="a HITSZ-VCM-layout dataset (default: generate OUT/synth)")
    ap.add_argument("--ids", type=int, default=120, help="identities of the generated set")
    ap.add_argument("--test-ids", type=int, default=40)
    ap.add_argument("--studies", nargs="+", default=["table2", "length"], choices=list(STUDIES))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", nargs="*", default=["train.epochs=6", "loss.warm_epochs=3"],
                    help="overrides that fix the training budget of every run (default: 6 epochs of the demo recipe)")
    ap.add_argument("--write-md", action="store_true", help="write the table and plot into BENCHMARKS.md / benchmarks/")
    ap.add_argument("--report-only", action="store_true", help="summarise the finished runs; train nothing")
    ap.add_argument("--rekey", action="store_true", help="first rename the finished results to today's keys")
    a = ap.parse_args()

    data = a.data
    if data is None:
        from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic

        data = a.out / "synth"
        cfg = SynthConfig(ids=a.ids, train_ids=a.ids - a.test_ids, seed=1)  # not the demo's seed-0 set
        marker = data / "synth_config.json"
        saved = json.loads(marker.read_text()) if marker.exists() else {}
        if not (saved.get("complete") and saved.get("config") == cfg.output_fields()):
            generate_synthetic(data, cfg)
    if a.rekey:
        print(f"re-keyed {rekey(data, a.out, a.budget)} result files", file=sys.stderr)
    rows = []
    total = sum(len(STUDIES[s]) for s in a.studies) * a.seeds
    # seed-major order: a benchmark stopped part-way has every variant at the same number of seeds
    for seed in range(a.seeds):
        for study in a.studies:
            for variant in STUDIES[study]:
                row = run_one(data, a.out, study, variant, seed, a.budget, train_missing=not a.report_only)
                if row is None:
                    continue
                rows.append(row)
                print(f"[{len(rows)}/{total}] {study} / {variant} / seed {seed}: "
                      f"IR->RGB {row['ir2rgb_rank1']:.1f} / {row['ir2rgb_mAP']:.1f}, RGB->IR {row['rgb2ir_rank1']:.1f} / "
                      f"{row['rgb2ir_mAP']:.1f} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    summary = summarise(rows)
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    what = (f"generated {a.ids - a.test_ids} train / {a.test_ids} test identities, near-infrared look, seed 1"
            if a.data is None else "given data")
    meta = (f"`python benchmarks/bench_accuracy.py --studies {' '.join(a.studies)} --seeds {a.seeds}` on {data} "
            f"({what}); budget {' '.join(a.budget)} "
            f"of the demo recipe; {cpu}, {os.cpu_count()} cores; {datetime.date.today()}. Mean ± sd over the seeds "
            "finished (a single run shows its value alone), percent.")
    md = markdown(summary, a.studies, meta)
    print(md)
    if a.write_md:
        png = Path(__file__).resolve().parent / "bench_accuracy.png"
        plot(summary, a.studies, png)
        write_section("bench_accuracy", "## Paper ablations on synthetic video (`benchmarks/bench_accuracy.py`)\n\n" + md
                      + "\n![ablations](benchmarks/bench_accuracy.png)\n")


if __name__ == "__main__":
    main()
