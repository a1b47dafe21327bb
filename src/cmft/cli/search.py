"""``cmft index`` (embed tracklets into a gallery index folder) and ``cmft search`` (top-k of a query).

Everything heavy (torch, the model, FAISS) is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cmft.cli._common import _fail, _progress, _task_callback, console, err


def _indexed_count(out: Path) -> int:
    try:
        return int(json.loads((out / "index.json").read_text(encoding="utf-8")).get("count", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0


def _extractor(checkpoint: Path, device: str, batch_size: int) -> Any:
    from cmft.inference import Extractor

    if batch_size < 1:
        _fail(f"--batch-size must be at least 1, got {batch_size}")
    try:
        return Extractor(checkpoint, device=device, batch_size=batch_size)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        _fail(str(e))


def _summary_table(entries: list[dict], before: int) -> Table:
    counts: dict[tuple[str, int], list[int]] = {}
    for e in entries:
        c = counts.setdefault((e["modality"], e["camera"]), [0, 0])
        c[0] += 1
        c[1] += e["id"] >= before
    table = Table(title="gallery index")
    for col in ("modality", "camera", "entries", "new"):
        table.add_column(col, justify="left" if col == "modality" else "right")
    for (mod, cam), (n, new) in sorted(counts.items()):
        table.add_row(mod, str(cam), str(n), str(new))
    return table


def index_cmd(
    dataset_or_dirs: Annotated[list[Path], typer.Argument(help="dataset roots (HITSZ-VCM or a `cmft track` export, SYSU-MM01, RegDB), or with --modality and --camera plain tracklet folders (one folder of frames per tracklet)")],
    checkpoint: Annotated[Path, typer.Option(help="the cmft checkpoint that embeds the tracklets (a run's best.pt / last.pt)")],
    out: Annotated[Path, typer.Option(help="index folder to create or extend")],
    dataset: Annotated[str, typer.Option(help="auto (from the layout), hitsz_vcm, sysu_mm01 or regdb")] = "auto",
    modality: Annotated[Optional[str], typer.Option(help="rgb or ir: plain tracklet folders' modality")] = None,
    camera: Annotated[Optional[int], typer.Option(help="plain tracklet folders' camera id")] = None,
    approximate: Annotated[bool, typer.Option(help="HNSW graph index (approximate, fast on large galleries) instead of exact search")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1")] = "auto",
    batch_size: Annotated[int, typer.Option(help="tracklets per forward pass")] = 32,
) -> None:
    """Embed every test tracklet of a dataset (or plain tracklet folders) into a gallery index; an existing index
    is extended, tracklets already in it are skipped."""
    from cmft.data.errors import DatasetFormatError
    from cmft.data.datasets.registry import detect_dataset
    from cmft.search.index import IndexFormatError

    if (modality is None) != (camera is None):
        _fail("plain tracklet folders need both --modality and --camera (a dataset root needs neither)")
    if modality is not None and modality not in ("rgb", "ir"):
        _fail(f"--modality must be rgb or ir, got {modality!r}")
    for p in dataset_or_dirs:
        if not p.is_dir():
            _fail(f"{p}: no such folder")
    if modality is None:
        for p in dataset_or_dirs:
            if dataset == "auto":
                try:
                    detect_dataset(p)
                except DatasetFormatError as e:
                    _fail(f"{e}. For plain tracklet folders give --modality and --camera.")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.json").is_file():
        if not any((out / n).exists() for n in ("embeddings.npy", "entries.json")):
            _fail(f"{out}: not empty and not a gallery index (no index.json); choose another --out")
    from cmft.search.indexing import index_dataset, index_folders

    ex = _extractor(checkpoint, device, batch_size)
    kind = "hnsw" if approximate else "flat"
    meta = {"checkpoint": str(checkpoint.resolve())}
    before = _indexed_count(out)
    try:
        with _progress() as p:
            if modality is not None:
                index = index_folders(ex, dataset_or_dirs, modality, int(camera), out, kind,  # type: ignore[arg-type]
                                      progress=_task_callback(p, "embedding folders"), meta=meta)
            else:
                for root in dataset_or_dirs:
                    index = index_dataset(ex, root, out, dataset, kind, progress=_task_callback(p, f"embedding {root.name}"), meta=meta)
    except (IndexFormatError, DatasetFormatError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    console.print(_summary_table(index.entries(), before))
    console.print(f"{len(index)} entries in {out} ({len(index) - before} new, {index.kind} index, "
                  f"{index.dim}-d embeddings of {index.meta.get('model', '?')})")


def _resolve_query(index: Any, query: str) -> int:
    """An entry id from a key, an id, or a unique key suffix (``0011/ir/D1/1.jpg``)."""
    hit = index.find(query)
    if hit is not None:
        return hit
    if query.isdigit():
        if int(query) < len(index):
            return int(query)
        _fail(f"--query {query}: no entry with that id (the index holds ids 0..{len(index) - 1})")
    tail = "/" + query.strip("/")
    matches = [e["id"] for e in index.entries() if e["key"].endswith(tail)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(index.entry(i)["key"] for i in matches[:3])
        _fail(f"--query {query!r} matches {len(matches)} keys (e.g. {shown}); give more of the key or an id")
    _fail(f"--query {query!r}: no entry has this key or id (nor a key ending in it)")


def search_cmd(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="an index folder written by `cmft index`")],
    query: Annotated[Optional[str], typer.Option(help="an indexed tracklet: its key, its id, or a unique end of its key")] = None,
    query_dir: Annotated[Optional[Path], typer.Option(help="a folder of frame images: a tracklet to embed (needs --query-modality and --checkpoint)")] = None,
    query_modality: Annotated[Optional[str], typer.Option(help="rgb or ir: the modality of --query-dir")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="the index's checkpoint, to embed --query-dir")] = None,
    top_k: Annotated[int, typer.Option(help="how many results")] = 10,
    modality: Annotated[Optional[str], typer.Option(help="search rgb, ir or any; default: the modality the query is not in (cross-modal)")] = None,
    camera: Annotated[Optional[list[int]], typer.Option(help="keep only these cameras (repeat the option for several)")] = None,
    exclude_same_camera_pid: Annotated[bool, typer.Option(help="leave out gallery entries of the query's identity seen by the query's camera (the HITSZ-VCM evaluation rule; needs an indexed query with a known identity)")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda: where --query-dir is embedded")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print the results as a JSON list")] = False,
) -> None:
    """Rank an index's tracklets against a query (cosine similarity, best first) with modality / camera filters."""
    from cmft.search.index import GalleryIndex, IndexFormatError

    if (query is None) == (query_dir is None):
        _fail("give exactly one of --query (an indexed tracklet) or --query-dir (a folder of frames)")
    if modality is not None and modality not in ("rgb", "ir", "any"):
        _fail(f"--modality must be rgb, ir or any, got {modality!r}")
    if top_k < 1:
        _fail(f"--top-k must be at least 1, got {top_k}")
    try:
        index = GalleryIndex.load(index_dir)
    except IndexFormatError as e:
        _fail(str(e))
    exclude: list[int] = []
    if query is not None:
        qid = _resolve_query(index, query)
        q_entry = index.entry(qid)
        q_vec, q_mod, label = index.embedding(qid), q_entry["modality"], f"#{qid} {q_entry['key']}"
        exclude.append(qid)  # never the query itself
        if exclude_same_camera_pid:
            if q_entry["pid"] is None:
                _fail(f"--exclude-same-camera-pid: query #{qid} has no known identity (pid)")
            exclude += [e["id"] for e in index.entries()
                        if e["pid"] == q_entry["pid"] and e["camera"] == q_entry["camera"] and e["id"] != qid]
    else:
        if exclude_same_camera_pid:
            _fail("--exclude-same-camera-pid needs an indexed query (--query) with a known identity")
        if query_modality not in ("rgb", "ir"):
            _fail("--query-dir needs --query-modality rgb or ir")
        if checkpoint is None:
            _fail("--query-dir needs --checkpoint (the checkpoint the index was built with)")
        from cmft.inference.extractor import frame_paths
        from cmft.search.indexing import check_model, extractor_meta

        try:
            frames = frame_paths(query_dir)  # type: ignore[arg-type]
        except (FileNotFoundError, ValueError) as e:
            _fail(str(e))
        ex = _extractor(checkpoint, device, 32)  # type: ignore[arg-type]
        try:
            check_model(index, extractor_meta(ex, checkpoint=str(checkpoint)), Path(index_dir) / "index.json")
        except IndexFormatError as e:
            _fail(str(e))
        q_vec, q_mod, label = ex([frames], query_modality)[0], query_modality, str(query_dir)
    target = modality or ("rgb" if q_mod == "ir" else "ir")
    try:
        hits = index.search(q_vec[None], k=top_k, modality=None if target == "any" else target, cameras=camera,
                            exclude=exclude)[0]
    except IndexFormatError as e:
        _fail(str(e))
    rows = []
    for rank, (gid, score) in enumerate(hits, 1):
        e = index.entry(gid)
        rows.append({"rank": rank, "id": gid, "key": e["key"], "camera": e["camera"], "modality": e["modality"],
                     "pid": e["pid"], "score": score, "time": e["time"], "source": e["source"], "thumbnail": e["thumbnail"]})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    where = f"{target} entries" + (f", cameras {', '.join(map(str, camera))}" if camera else "")
    table = Table(title=f"top {top_k} of {q_mod} query {label} among {where}")
    for col in ("rank", "id", "key", "camera", "modality", "pid", "score", "time"):
        table.add_column(col, justify="left" if col in ("key", "modality", "time") else "right",
                         overflow="fold" if col == "key" else "ellipsis")
    for r in rows:
        table.add_row(str(r["rank"]), str(r["id"]), r["key"], str(r["camera"]), r["modality"],
                      "-" if r["pid"] is None else str(r["pid"]), f"{r['score']:.4f}", r["time"] or "-")
    console.print(table)
    if not rows:
        err.print("no entry passes the filters")


def register(app: typer.Typer) -> None:
    """Add ``index`` and ``search`` to ``app``."""
    app.command("index")(index_cmd)
    app.command("search")(search_cmd)
