"""The gallery at archive scale: the cmft store (LanceDB with its tuned search policy) against Milvus Lite and exact
FAISS in memory, at 10^4, 10^5 and 10^6 entries of 2,048-d embeddings.

    python benchmarks/bench_gallery.py                                   # 10^4 and 10^5, every candidate
    python benchmarks/bench_gallery.py --sizes 1000000 --candidates store   # the 10^6 store (~9 GB of disk)
    python benchmarks/bench_gallery.py --crash 20 --candidates store     # kill an appending child 20 times
    python benchmarks/bench_gallery.py --report-only --write-md          # the table in BENCHMARKS.md

Recall is measured against exact answers computed apart from every candidate (numpy over the generated embeddings).

Per size and candidate: the build rate; the store time of one add of 1,000 tracklets onto the full gallery
(median of 5; embedding excluded); top-10 search latency p50 / p99 under five filters, from none to one day of
ten cameras; recall@10 against exact search with the same filter; the time to open the gallery; disk per entry.

The embeddings have a re-ID gallery's structure (people on a low-dimensional appearance space, 8 tracklets
each), so nearest neighbours mean something under any filter; queries are fresh tracklets of indexed people. Each entry carries 24
frame paths, as a HITSZ-VCM tracklet does. Results go to ``out/bench_gallery/<candidate>_<size>.json``; a run
skips what is already there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path("out/bench_gallery")
CAMERAS = 100
DAYS = 30
T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc).timestamp()
PER_ID = 8
LATENT = 32
FILTERS = {  # name -> (modality, cameras, since offset days, until offset days)
    "none": (None, None, None, None),
    "ir": ("ir", None, None, None),
    "ir + 7 days": ("ir", None, 10, 17),
    "ir + 10 cameras": ("ir", list(range(1, 11)), None, None),
    "ir + 10 cameras + 1 day": ("ir", list(range(1, 11)), 12, 13),
}


class Data:
    """Deterministic unit embeddings with a re-ID gallery's structure, and their entries, made chunk by chunk.

    People are points of a smooth low-dimensional appearance space (a random ``LATENT``-d subspace: real
    embeddings have a low intrinsic dimension) plus what is their own; a person's tracklets scatter around them.
    Two tracklets of one person have cosine about 0.74, two people about 0.6 x the cosine of their appearance."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        self.dim, self.seed = dim, seed
        a = np.random.default_rng(seed).normal(size=(LATENT, dim)).astype(np.float32)
        self.basis = a / np.linalg.norm(a, axis=1, keepdims=True)

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def vectors(self, start: int, n: int) -> np.ndarray:
        assert start % PER_ID == 0 and n % PER_ID == 0
        rng = np.random.default_rng([self.seed, start])
        k = n // PER_ID
        look = self._unit(rng.normal(size=(k, LATENT)).astype(np.float32) @ self.basis)
        own = self._unit(rng.normal(size=(k, self.dim)).astype(np.float32))
        person = self._unit(look + 0.5 * own)
        noise = self._unit(rng.normal(size=(n, self.dim)).astype(np.float32))
        return self._unit(np.repeat(person, PER_ID, axis=0) + 0.6 * noise)

    @staticmethod
    def columns(start: int, n: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([7, start])
        return {"camera": rng.integers(1, CAMERAS + 1, n), "rgb": rng.integers(0, 2, n).astype(bool),
                "t": T0 + rng.uniform(0, DAYS * 86400, n)}

    def entries(self, start: int, n: int, prefix: str = "") -> list[dict]:
        c = self.columns(start, n)
        out = []
        for j in range(n):
            i, cam = start + j, int(c["camera"][j])
            when = datetime.datetime.fromtimestamp(float(c["t"][j]), datetime.timezone.utc)
            folder = f"/archive/cam{cam:03d}/{when:%Y-%m-%d}/{prefix}track{i:08d}"
            out.append({"key": f"{prefix}{i}", "camera": cam, "modality": "rgb" if c["rgb"][j] else "ir", "pid": None,
                        "time": None, "captured": when.isoformat(), "source": folder,
                        "frames": [f"{folder}/{f:06d}.jpg" for f in range(1, 25)], "thumbnail": None})
        return out

    def queries(self, n_total: int, q: int, step: int) -> np.ndarray:
        """``q`` new tracklets of indexed people: indexed tracklets (built in chunks of ``step``) plus fresh noise."""
        rng = np.random.default_rng(99)
        rows = np.sort(rng.choice(n_total, q, replace=False))
        base = np.concatenate([self.vectors(c, step)[rows[(rows >= c) & (rows < c + step)] - c]
                               for c in np.unique(rows // step * step)])
        return self._unit(base + 0.6 * self._unit(rng.normal(size=base.shape).astype(np.float32)))


def _filter_kwargs(name: str) -> dict[str, Any]:
    mod, cams, a, b = FILTERS[name]
    kw: dict[str, Any] = {"modality": mod, "cameras": cams}
    if a is not None:
        kw["since"], kw["until"] = T0 + a * 86400, T0 + b * 86400
    return kw


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _warm(folder: Path) -> float:
    """Read every file of a gallery once (as a service that has been up a while has): seconds taken."""
    t0 = time.perf_counter()
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                while fh.read(1 << 26):
                    pass
    return time.perf_counter() - t0


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p))


# -- exact answers, computed apart from every candidate ------------------------------------------------------
ADDS = 5  # adds of 1,000 new tracklets ("new<i>") timed onto the built gallery, then searched with the rest


def _chunks(n: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the generated chunks as the galleries hold them: the build, then the timed adds."""
    step = 10_000 if n >= 10_000 else n
    return [(s, step) for s in range(0, n, step)] + [(n + r * 1000, 1000) for r in range(ADDS)]


def _mask(cols: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Which generated entries pass the filter ``name``."""
    mod, cams, a, b = FILTERS[name]
    keep = np.ones(len(cols["rgb"]), bool)
    if mod is not None:
        keep &= cols["rgb"] == (mod == "rgb")
    if cams is not None:
        keep &= np.isin(cols["camera"], cams)
    if a is not None:
        keep &= (cols["t"] >= T0 + a * 86400) & (cols["t"] <= T0 + b * 86400)
    return keep


def truth(data: Data, n: int, queries: np.ndarray, k: int = 10) -> dict[str, list[list[tuple[str, float]]]]:
    """Per filter, the exact top-``k`` ``(key, score)`` of each query: one pass over the generated embeddings in numpy
    (float32 dot products, ties to the lower key number), independent of every gallery measured."""
    best: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {f: [(np.zeros(0, np.float32), np.zeros(0, np.int64))] * len(queries)
                                                             for f in FILTERS}
    for start, step in _chunks(n):
        scores = data.vectors(start, step) @ queries.T  # [step, Q]
        cols = data.columns(start, step)
        idx = np.arange(start, start + step)
        for name in FILTERS:
            keep = _mask(cols, name)
            for qi in range(len(queries)):
                s, i = best[name][qi]
                s, i = np.concatenate([s, scores[keep, qi]]), np.concatenate([i, idx[keep]])
                order = np.lexsort((i, -s))[:k]
                best[name][qi] = (s[order], i[order])
    return {name: [[(("new" if i >= n else "") + str(int(i)), float(sc)) for sc, i in zip(*r)] for r in rows]
            for name, rows in best.items()}


def passing(n: int) -> dict[str, int]:
    out = dict.fromkeys(FILTERS, 0)
    for start, step in _chunks(n):
        cols = Data.columns(start, step)
        for name in FILTERS:
            out[name] += int(_mask(cols, name).sum())
    return out


def _measure(search: Any, key_of: Any, queries: np.ndarray, exact: dict[str, Any], log: Any, label: str,
             share: dict[str, int], n: int) -> dict[str, Any]:
    """p50 / p99 latency of one query at a time and recall@10 against the exact keys, per filter."""
    out: dict[str, Any] = {}
    for name in FILTERS:
        kw = _filter_kwargs(name)
        lat, hits = [], []
        for i in range(len(queries)):
            t0 = time.perf_counter()
            got = search(queries[i], kw)
            lat.append(time.perf_counter() - t0)
            ref = {key for key, _ in exact[name][i]}
            hits.append(len(ref & {key_of(j) for j in got}) / max(1, len(ref)))
        out[name] = {"p50_ms": 1000 * _pct(lat, 50), "p99_ms": 1000 * _pct(lat, 99), "recall10": float(np.mean(hits)),
                     "passing": share[name]}
        log(f"  {label} {n}: {name}: p50 {out[name]['p50_ms']:.1f} ms, p99 {out[name]['p99_ms']:.1f} ms, "
            f"recall {out[name]['recall10']:.3f}")
    return out


# -- the cmft store (LanceDB) ---------------------------------------------------------------------------------
def run_store(n: int, dim: int, q: int, folder: Path, log: Any) -> dict[str, Any]:
    from cmft.search.store import GalleryStore

    data = Data(dim)
    shutil.rmtree(folder, ignore_errors=True)
    store = GalleryStore.create(folder, dim, "ivf")
    step = 10_000 if n >= 10_000 else n
    t0 = time.perf_counter()
    for start in range(0, n, step):
        store.add(data.vectors(start, step), data.entries(start, step))
        if start // step % 10 == 9:
            log(f"  store {n}: {start + step} added ({time.perf_counter() - t0:.0f} s)")
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.compact(progress=lambda m: log(f"  store {n}: {m} ({time.perf_counter() - t0:.0f} s)"))
    compact_s = time.perf_counter() - t0
    adds = []
    for r in range(ADDS):
        start = n + r * 1000
        vec, ents = data.vectors(start, 1000), data.entries(start, 1000, prefix="new")
        t0 = time.perf_counter()
        store.add(vec, ents)
        adds.append(time.perf_counter() - t0)
    opens = []
    for _ in range(5):
        t0 = time.perf_counter()
        reader = GalleryStore(folder, readonly=True)
        len(reader)
        opens.append(time.perf_counter() - t0)
    queries = data.queries(n, q, step)
    log(f"  store {n}: exact answers")
    exact = truth(data, n, queries)
    keys = {}

    def search(vec: np.ndarray, kw: dict[str, Any]) -> list[int]:
        got = reader.search(vec, k=10, **kw)[0]
        return [i for i, _ in got]

    def key_of(i: int) -> str:
        if i not in keys:
            keys[i] = reader.entry(i)["key"]
        return keys[i]

    out: dict[str, Any] = {"warm_s": _warm(folder)}
    out["filters"] = _measure(search, key_of, queries, exact, log, "store", passing(n), n)
    out.update({"entries": len(reader), "build_per_s": n / build_s, "compact_s": compact_s,
                "add1000_s": statistics.median(adds), "add1000_all_s": adds, "open_s": statistics.median(opens),
                "disk_bytes": _du(folder), "nlist": reader._partitions(),
                "policy": _policy()})
    return out


def _policy() -> dict[str, Any]:
    import cmft.search.store as sm

    return {"exact_below": sm.EXACT_BELOW, "probes": f"{sm.PROBE:g} x sqrt(nlist) / sqrt(share)", "refine": sm.REFINE}


def sweep(n: int, dim: int, q: int, folder: Path, log: Any, probes: list[float], refines: list[int]) -> list[dict[str, Any]]:
    """On a kept store (``--keep``), recall@10 and latency of the approximate path for several probe factors and
    refine factors: the measurement behind the store's PROBE and REFINE."""
    import cmft.search.store as sm
    from cmft.search.store import GalleryStore

    data = Data(dim)
    reader = GalleryStore(folder, readonly=True)
    queries = data.queries(n, q, 10_000 if n >= 10_000 else n)
    exact = truth(data, n, queries)
    share = passing(n)
    keys: dict[int, str] = {}

    def key_of(i: int) -> str:
        if i not in keys:
            keys[i] = reader.entry(i)["key"]
        return keys[i]

    rows = []
    for probe in probes:
        for refine in refines:
            sm.PROBE, sm.REFINE = probe, refine
            res = _measure(lambda v, kw: [i for i, _ in reader.search(v, k=10, **kw)[0]], key_of, queries, exact, log,
                           f"probe {probe:g} refine {refine}", share, n)
            rows.append({"probe": probe, "refine": refine, "filters": res})
    return rows


# -- Milvus Lite, the same policy where its API allows --------------------------------------------------------
def run_milvus(n: int, dim: int, q: int, folder: Path, log: Any) -> dict[str, Any]:
    from cmft.search.milvus import MilvusGallery, key_id

    data = Data(dim)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    kind = "ivf" if n >= 20_000 else "flat"
    g = MilvusGallery.create(str(folder / "g.db"), dim, kind)
    step = 10_000 if n >= 10_000 else n
    t0 = time.perf_counter()
    for start in range(0, n, step):
        g.add(data.vectors(start, step), data.entries(start, step))
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    g.compact()
    compact_s = time.perf_counter() - t0
    adds = []
    for r in range(ADDS):
        start = n + r * 1000
        vec, ents = data.vectors(start, 1000), data.entries(start, 1000, prefix="new")
        t0 = time.perf_counter()
        g.add(vec, ents)
        adds.append(time.perf_counter() - t0)
    g.close()
    opens = []
    for _ in range(3):
        t0 = time.perf_counter()
        reader = MilvusGallery(str(folder / "g.db"), readonly=True)
        len(reader)
        opens.append(time.perf_counter() - t0)
    queries = data.queries(n, q, step)
    exact = truth(data, n, queries)
    by_id = {key_id(str(i)): str(i) for i in range(n)} | {key_id(f"new{i}"): f"new{i}" for i in range(n, n + ADDS * 1000)}

    def search(vec: np.ndarray, kw: dict[str, Any]) -> list[int]:
        return [i for i, _ in reader.search(vec, k=10, **kw)[0]]

    out: dict[str, Any] = {"filters": _measure(search, lambda i: by_id.get(i, "?"), queries, exact, log, "milvus", passing(n), n)}
    out.update({"entries": len(reader), "build_per_s": n / build_s, "compact_s": compact_s,
                "add1000_s": statistics.median(adds), "add1000_all_s": adds, "open_s": statistics.median(opens),
                "disk_bytes": _du(folder), "index": "IVF_FLAT, nprobe 96 of 1024" if kind == "ivf" else "FLAT"})
    return out


# -- the old index: one folder of embeddings.npy + entries.json, FAISS in memory -------------------------------
def run_faiss(n: int, dim: int, q: int, folder: Path, log: Any) -> dict[str, Any]:
    from cmft.search.index import GalleryIndex

    data = Data(dim)
    shutil.rmtree(folder, ignore_errors=True)
    idx = GalleryIndex.create(dim, "flat")
    step = 10_000 if n >= 10_000 else n
    t0 = time.perf_counter()
    for start in range(0, n, step):
        idx.add(data.vectors(start, step), data.entries(start, step))
    idx.save(folder)
    build_s = time.perf_counter() - t0
    adds = []
    for r in range(ADDS):
        start = n + r * 1000
        t0 = time.perf_counter()
        idx.add(data.vectors(start, 1000), data.entries(start, 1000, prefix="new"))
        idx.save(folder)  # the old format rewrites every file on each add
        adds.append(time.perf_counter() - t0)
    opens = []
    for _ in range(3):
        t0 = time.perf_counter()
        idx = GalleryIndex.load(folder)
        opens.append(time.perf_counter() - t0)
    queries = data.queries(n, q, 10_000 if n >= 10_000 else n)
    exact = truth(data, n, queries)
    share = passing(n)
    out: dict[str, Any] = {"filters": {}}
    for name in FILTERS:
        kw = _filter_kwargs(name)
        if "since" in kw:
            continue  # the old index has no time filter
        lat, hits = [], []
        for i in range(q):
            t0 = time.perf_counter()
            got = idx.search(queries[i], k=10, modality=kw["modality"], cameras=kw["cameras"])[0]
            lat.append(time.perf_counter() - t0)
            ref = {key for key, _ in exact[name][i]}
            hits.append(len(ref & {idx._entries[j]["key"] for j, _ in got}) / max(1, len(ref)))
        out["filters"][name] = {"p50_ms": 1000 * _pct(lat, 50), "p99_ms": 1000 * _pct(lat, 99), "recall10": float(np.mean(hits)),
                                "passing": share[name]}
        log(f"  faiss {n}: {name}: p50 {out['filters'][name]['p50_ms']:.1f} ms")
    out.update({"entries": len(idx), "build_per_s": n / build_s, "add1000_s": statistics.median(adds), "add1000_all_s": adds,
                "open_s": statistics.median(opens), "disk_bytes": _du(folder)})
    return out


# -- crash safety: a child appending batches, SIGKILLed at random moments -------------------------------------
_CHILD = {
    "store": """
import sys, numpy as np
from cmft.search.store import GalleryStore
g = GalleryStore.create(sys.argv[1], 64, exist_ok=True)
i = len(g)
rng = np.random.default_rng(i)
while True:
    g.add(rng.normal(size=(100, 64)).astype(np.float32), [{"key": f"k{i + j}", "camera": 1, "modality": "ir", "source": "s",
          "frames": ["f"]} for j in range(100)])
    i += 100
""",
}


def _count(cand: str, folder: Path) -> int:
    from cmft.search.store import GalleryStore, is_store

    if not is_store(folder):
        return 0  # killed before the store's first commit
    with GalleryStore(folder, readonly=True) as g:
        return len(g)


def crash_trial(cand: str, kills: int, folder: Path, log: Any) -> dict[str, Any]:
    """Kill an appending child ``kills`` times at random moments; after each kill the gallery must open and hold
    whole batches of 100, never fewer rows than before."""
    import random
    import signal

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    target = folder / "g"
    rng = random.Random(0)
    ok, last, problems = 0, 0, []
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD[cand], str(target)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            n = _count(cand, target)
            if n % 100 or n < last:
                problems.append(f"{n} rows after a kill (before: {last})")
            else:
                ok += 1
            last = n
        except Exception as e:  # noqa: BLE001 - any failure to open is the finding
            problems.append(f"{type(e).__name__}: {str(e)[:200]}")
    log(f"  crash {cand}: {ok}/{kills} kills left a whole gallery ({last} rows)")
    return {"kills": kills, "whole": ok, "rows": last, "problems": problems[:5]}


# -- report ---------------------------------------------------------------------------------------------------
NAMES = {"store": "cmft store (LanceDB 0.40, tuned policy)", "milvus": "Milvus Lite 2.5 (IVF_FLAT / FLAT)",
         "faiss": "exact FAISS flat in memory (old folder format)"}


def report() -> str:
    results = {}
    for p in sorted(OUT.glob("*.json")):
        if p.stem.startswith(("crash_", "sweep_")):
            continue
        cand, size = p.stem.rsplit("_", 1)
        results[(cand, int(size))] = json.loads(p.read_text())
    if not results:
        return "no results yet"
    meta = next(iter(results.values())).get("machine", {})
    lines = [f"Command: `python benchmarks/bench_gallery.py --sizes ... --candidates ...` then `--report-only --write-md`. "
             f"Machine: {meta.get('machine', '?')}. Date: {meta.get('date', '?')}. Embeddings: 2,048-d, people on a 32-d "
             "appearance subspace plus their own part, 8 tracklets each (see the script), 100 cameras, 30 days; entries with 24 frame paths; "
             "100 queries per filter (fresh tracklets of indexed people), top-10, timed one at a time after the gallery's "
             "files were read once (a service that has been up a while).", "",
             "| gallery | entries | add 1,000 (s) | open (s) | disk / entry (KiB) | build (entries/s) | index / compaction (s) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for (cand, size), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {NAMES.get(cand, cand)} | {size:,} | {r['add1000_s']:.3f} | {r['open_s']:.3f} | "
                     f"{r['disk_bytes'] / r['entries'] / 1024:.1f} | {r['build_per_s']:,.0f} | "
                     f"{r.get('compact_s', float('nan')):.1f} |")
    lines += ["", "Top-10 search, p50 / p99 latency in ms and recall@10 against exact search with the same filter "
              "(share of the gallery passing the filter in brackets):", ""]
    names = list(FILTERS)
    lines += ["| gallery | entries | " + " | ".join(names) + " |", "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for (cand, size), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = []
        for f in names:
            x = r["filters"].get(f)
            if x is None:
                cells.append("-")
                continue
            rec = "?" if x.get("recall10") is None else f"{x['recall10']:.3f}"
            share = f" ({100 * x['passing'] / r['entries']:.1f} %)" if "passing" in x else ""
            cells.append(f"{x['p50_ms']:.1f} / {x['p99_ms']:.1f}, R {rec}{share}")
        lines.append(f"| {NAMES.get(cand, cand)} | {size:,} | " + " | ".join(cells) + " |")
    crash = {p.stem.split("_", 1)[1]: json.loads(p.read_text()) for p in sorted(OUT.glob("crash_*.json"))}
    if crash:
        lines += ["", "Crash safety (`--crash 20`): a child process appending batches of 100 rows, SIGKILLed at a random "
                  "moment 1.5-3 s after it started, 20 times; then the gallery is opened:", "",
                  "| gallery | kills | opened whole (batches of 100, nothing lost) | rows at the end |", "| --- | --- | --- | --- |"]
        for cand, r in crash.items():
            lines.append(f"| {NAMES.get(cand, cand)} | {r['kills']} | {r['whole']} | {r['rows']:,} |")
    return "\n".join(lines)


def plot(path: Path) -> Path | None:
    """Top-10 latency (p50) and recall@10 against the gallery size, per gallery and filter."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results = {}
    for p in sorted(OUT.glob("*.json")):
        if not p.stem.startswith(("crash_", "sweep_")):
            cand, size = p.stem.rsplit("_", 1)
            results.setdefault(cand, {})[int(size)] = json.loads(p.read_text())
    if not results:
        return None
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for cand, by_size in results.items():
        sizes = sorted(by_size)
        for f, style in (("none", "-"), ("ir + 10 cameras", "--")):
            xs = [n for n in sizes if f in by_size[n]["filters"]]
            if not xs:
                continue
            label = f"{NAMES.get(cand, cand)}, {f}"
            ax1.plot(xs, [by_size[n]["filters"][f]["p50_ms"] for n in xs], style, marker="o", label=label)
            rec = [(n, by_size[n]["filters"][f]["recall10"]) for n in xs if by_size[n]["filters"][f]["recall10"] is not None]
            if rec:
                ax2.plot([n for n, _ in rec], [r for _, r in rec], style, marker="o", label=label)
    ax1.set(xscale="log", yscale="log", xlabel="entries (2,048-d)", ylabel="top-10 latency p50 (ms)")
    ax1.axhline(50, color="grey", lw=0.8, ls=":")
    ax2.set(xscale="log", xlabel="entries (2,048-d)", ylabel="recall@10 vs exact", ylim=(0.4, 1.01))
    ax2.axhline(0.95, color="grey", lw=0.8, ls=":")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--candidates", nargs="+", default=["store", "milvus", "faiss"], choices=["store", "milvus", "faiss"])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the galleries under out/bench_gallery/data")
    ap.add_argument("--crash", type=int, default=0, metavar="KILLS", help="only the crash trial: KILLS random kills per candidate")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="only the probe / refine sweep on the kept store of each size")
    ap.add_argument("--probes", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0], help="--sweep: probe factors")
    ap.add_argument("--refines", type=int, nargs="+", default=[5, 10, 20], help="--sweep: refine factors")
    ap.add_argument("--write-md", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    machine = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
               "date": datetime.date.today().isoformat(), "python": sys.version.split()[0]}
    if args.crash:
        for cand in [c for c in args.candidates if c in _CHILD]:
            r = crash_trial(cand, args.crash, OUT / "data" / f"crash_{cand}", log)
            (OUT / f"crash_{cand}.json").write_text(json.dumps(r, indent=1))
    elif args.sweep:
        for size in args.sizes:
            rows = sweep(size, args.dim, args.queries, OUT / "data" / f"store_{size}", log, args.probes, args.refines)
            (OUT / f"sweep_{size}.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    elif not args.report_only:
        for size in args.sizes:
            for cand in args.candidates:
                res_path = OUT / f"{cand}_{size}.json"
                if res_path.exists():
                    log(f"{res_path} exists: skipped")
                    continue
                folder = OUT / "data" / f"{cand}_{size}"
                log(f"{cand} at {size:,} entries")
                if cand == "store":
                    r = run_store(size, args.dim, args.queries, folder, log)
                elif cand == "milvus":
                    r = run_milvus(size, args.dim, args.queries, folder, log)
                else:
                    r = run_faiss(size, args.dim, args.queries, folder, log)
                r["machine"] = machine
                res_path.write_text(json.dumps(r, indent=1))
            if not args.keep:
                for cand in args.candidates:
                    shutil.rmtree(OUT / "data" / f"{cand}_{size}", ignore_errors=True)
    text = report()
    print(text)
    if args.write_md:
        from markdown_section import write_section  # beside this script

        png = plot(Path(__file__).resolve().parent / "bench_gallery.png")
        if png is not None:
            text += f"\n\n![latency and recall against gallery size](benchmarks/{png.name})"
        write_section("bench_gallery", "## Gallery store at archive scale (`benchmarks/bench_gallery.py`)\n\n" + text)


if __name__ == "__main__":
    main()
