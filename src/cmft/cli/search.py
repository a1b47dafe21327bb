"""``cmft index`` (embed tracklets into a gallery store), ``cmft prune`` (retention) and ``cmft search`` (top-k of a query).

Everything heavy (torch, the model, FAISS) is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cmft.cli._common import _fail, _progress, _task_callback, console, err


def _extractor(checkpoint: Path, device: str, batch_size: int) -> Any:
    from cmft.inference import Extractor

    if batch_size < 1:
        _fail(f"--batch-size must be at least 1, got {batch_size}")
    try:
        return Extractor(checkpoint, device=device, batch_size=batch_size)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        _fail(str(e))


def _summary_table(before: list[tuple[str, int, int]], after: list[tuple[str, int, int]]) -> Table:
    old = {(m, c): n for m, c, n in before}
    table = Table(title="gallery store")
    for col in ("modality", "camera", "entries", "new"):
        table.add_column(col, justify="left" if col == "modality" else "right")
    for mod, cam, n in after:
        table.add_row(mod, str(cam), str(n), str(max(0, n - old.get((mod, cam), 0))))
    return table


def _open_for_reading(spec: str) -> Any:
    """The gallery at ``spec`` (store folder or Milvus URI) opened read-only, or a clear exit (an old index folder
    names the upgrade command)."""
    from cmft.search.gallery import IndexFormatError
    from cmft.search.gallery import open_gallery

    try:
        return open_gallery(spec, readonly=True)
    except IndexFormatError as e:
        _fail(str(e))


def index_cmd(
    dataset_or_dirs: Annotated[Optional[list[Path]], typer.Argument(help="dataset roots (HITSZ-VCM or a `cmft track` export, SYSU-MM01, RegDB), or with --modality and --camera plain tracklet folders (one folder of frames per tracklet); none with --upgrade or --compact alone")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="the cmft checkpoint that embeds the tracklets (a run's best.pt / last.pt)")] = None,
    out: Annotated[Optional[str], typer.Option("--store", "--out", help="gallery to create or extend: a store folder, a Milvus Lite file (*.db) or a Milvus server URI (http://host:19530)")] = None,
    dataset: Annotated[str, typer.Option(help="auto (from the layout), hitsz_vcm, sysu_mm01 or regdb")] = "auto",
    modality: Annotated[Optional[str], typer.Option(help="rgb or ir: plain tracklet folders' modality")] = None,
    camera: Annotated[Optional[int], typer.Option(help="plain tracklet folders' camera id")] = None,
    captured: Annotated[Optional[str], typer.Option(help="plain tracklet folders' capture time, ISO 8601 (e.g. 2026-11-30T21:05:00Z): what --since / --until filter on")] = None,
    approximate: Annotated[bool, typer.Option(help="approximate (IVF) search, fast on large galleries, instead of exact search")] = False,
    upgrade: Annotated[bool, typer.Option(help="convert a gallery folder of an old format (cmft-gallery-index/1 or cmft-gallery-store/2) into a LanceDB store, keeping ids, entries, embeddings and thumbnails")] = False,
    compact: Annotated[Optional[bool], typer.Option("--compact/--no-compact", help="optimize the store after adding (merge fragments, drop deleted rows, (re)build the vector and filter indexes); default: when it has grown enough to pay")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1")] = "auto",
    batch_size: Annotated[int, typer.Option(help="tracklets per forward pass")] = 32,
    commit_every: Annotated[int, typer.Option(help="tracklets per transaction: a killed run keeps every batch it committed")] = 256,
) -> None:
    """Embed every test tracklet of a dataset (or plain tracklet folders) into a gallery store; an existing store
    is extended (tracklets already in it are skipped), an old index folder is converted first. Each batch of
    tracklets is committed as it is done: a killed run keeps them, and the same command again finishes the rest."""
    from cmft.data.errors import DatasetFormatError
    from cmft.data.datasets.registry import detect_dataset
    from cmft.search.gallery import IndexFormatError, parse_time
    from cmft.search.store import open_store

    dirs = list(dataset_or_dirs or [])
    if out is None:
        _fail("give the gallery store folder with --store (or --out)")
    if commit_every < 1:
        _fail(f"--commit-every must be at least 1, got {commit_every}")
    if not dirs and not upgrade and not compact:
        _fail("nothing to do: give dataset roots or tracklet folders to index, or --upgrade / --compact")
    if (modality is None) != (camera is None):
        _fail("plain tracklet folders need both --modality and --camera (a dataset root needs neither)")
    if modality is not None and modality not in ("rgb", "ir"):
        _fail(f"--modality must be rgb or ir, got {modality!r}")
    if captured is not None:
        if modality is None:
            _fail("--captured sets the capture time of plain tracklet folders (with --modality and --camera)")
        try:
            parse_time(captured, "--captured")
        except IndexFormatError as e:
            _fail(str(e))
    for p in dirs:
        if not p.is_dir():
            _fail(f"{p}: no such folder")
    if modality is None:
        for p in dirs:
            if dataset == "auto":
                try:
                    detect_dataset(p)
                except DatasetFormatError as e:
                    _fail(f"{e}. For plain tracklet folders give --modality and --camera.")
    from cmft.search.indexing import index_dataset, index_folders, needs_upgrade
    from cmft.search.gallery import open_gallery

    if needs_upgrade(out):
        err.print(f"{out}: a gallery folder of an old format: converting it into a LanceDB gallery store")
        try:
            open_store(out).close()
        except IndexFormatError as e:
            _fail(str(e))
        console.print(f"{out}: converted (ids, entries and thumbnails kept)")
    elif upgrade and not dirs:
        _fail(f"{out}: not a gallery folder of an old format (nothing to upgrade)")
    if not dirs:
        store = _open_for_writing(out)
        before = store.counts()
    else:
        if checkpoint is None:
            _fail("indexing needs --checkpoint (the model that embeds the tracklets)")
        ex = _extractor(checkpoint, device, batch_size)
        kind = "ivf" if approximate else "flat"
        meta = {"checkpoint": str(checkpoint.resolve())}
        try:
            try:
                before = open_gallery(out).counts()
            except IndexFormatError:
                before = []  # a new gallery (anything wrong with an existing one is reported below)
            with _progress() as p:
                if modality is not None:
                    store = index_folders(ex, dirs, modality, int(camera), out, kind,  # type: ignore[arg-type]
                                          progress=_task_callback(p, "embedding folders"), meta=meta, captured=captured,
                                          commit_every=commit_every)
                else:
                    for root in dirs:
                        store = index_dataset(ex, root, out, dataset, kind, progress=_task_callback(p, f"embedding {root.name}"),
                                              meta=meta, commit_every=commit_every)
        except (IndexFormatError, DatasetFormatError, FileNotFoundError, ValueError) as e:
            _fail(str(e))
    if compact or (compact is None and store.needs_compaction()):
        with _progress() as p:
            task = p.add_task("compacting", total=None)
            store.compact(progress=lambda msg: p.update(task, description=msg))
    after = store.counts()
    console.print(_summary_table(before, after))
    console.print(f"{len(store)} entries ({max(0, sum(c[2] for c in after) - sum(c[2] for c in before))} new, "
                  f"{'approximate (IVF)' if store.kind == 'ivf' else 'exact'} search, "
                  f"{store.dim}-d embeddings of {store.meta.get('model', '?')}) in {out}")


def _open_for_writing(spec: str) -> Any:
    from cmft.search.gallery import IndexFormatError
    from cmft.search.gallery import open_gallery

    try:
        return open_gallery(spec)
    except IndexFormatError as e:
        _fail(str(e))


def prune_cmd(
    store_dir: Annotated[str, typer.Argument(metavar="STORE", help="a gallery written by `cmft index`: store folder, Milvus Lite file or Milvus URI")],
    before: Annotated[Optional[str], typer.Option(help="delete every tracklet captured before this time (ISO 8601): a retention policy")] = None,
    older_than_days: Annotated[Optional[float], typer.Option(help="delete every tracklet captured more than this many days ago")] = None,
    key: Annotated[Optional[list[str]], typer.Option(help="delete the tracklet with this key (repeat for several)")] = None,
    id: Annotated[Optional[list[int]], typer.Option("--id", help="delete the tracklet with this id (repeat for several)")] = None,  # noqa: A002
    compact: Annotated[bool, typer.Option("--compact/--no-compact", help="optimize the store now (merge fragments, drop the deleted rows, update the indexes); deleted entries leave searches at once either way")] = True,
) -> None:
    """Delete tracklets from a gallery store: by capture time (retention), key or id, in one transaction."""
    import time as _time

    from cmft.search.gallery import IndexFormatError

    if before is not None and older_than_days is not None:
        _fail("give --before or --older-than-days, not both")
    cut: Any = before
    if older_than_days is not None:
        if older_than_days < 0:
            _fail(f"--older-than-days must be >= 0, got {older_than_days}")
        cut = _time.time() - older_than_days * 86400
    if cut is None and not key and not id:
        _fail("nothing to delete: give --before, --older-than-days, --key or --id")
    store = _open_for_writing(store_dir)
    try:
        n = store.delete(ids=id or (), keys=key or (), before=cut)
    except IndexFormatError as e:
        _fail(str(e))
    if compact and n:
        store.compact()
    console.print(f"{n} tracklets deleted from {store_dir}; {len(store)} remain")


def _resolve_query(index: Any, query: str) -> int:
    """An entry id from a key, an id, or a unique key suffix (``0011/ir/D1/1.jpg``)."""
    from cmft.search.gallery import IndexFormatError

    hit = index.find(query)
    if hit is not None:
        return hit
    if query.isdigit():
        try:
            index.entry(int(query))
            return int(query)
        except IndexFormatError:
            _fail(f"--query {query}: no entry with that id (the index holds {len(index)} entries)")
    matches = index.find_suffix("/" + query.strip("/"), limit=4)
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(index.entry(i)["key"] for i in matches[:3])
        _fail(f"--query {query!r} matches {len(matches)}{'+' if len(matches) == 4 else ''} keys (e.g. {shown}); give more of the key or an id")
    _fail(f"--query {query!r}: no entry has this key or id (nor a key ending in it)")


def search_cmd(
    index_dir: Annotated[str, typer.Argument(metavar="STORE", help="a gallery written by `cmft index`: store folder, Milvus Lite file or Milvus URI")],
    query: Annotated[Optional[str], typer.Option(help="an indexed tracklet: its key, its id, or a unique end of its key")] = None,
    query_dir: Annotated[Optional[Path], typer.Option(help="a folder of frame images: a tracklet to embed (needs --query-modality and --checkpoint)")] = None,
    query_modality: Annotated[Optional[str], typer.Option(help="rgb or ir: the modality of --query-dir")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="the index's checkpoint, to embed --query-dir")] = None,
    top_k: Annotated[int, typer.Option(help="how many results")] = 10,
    modality: Annotated[Optional[str], typer.Option(help="search rgb, ir or any; default: the modality the query is not in (cross-modal)")] = None,
    camera: Annotated[Optional[list[int]], typer.Option(help="keep only these cameras (repeat the option for several)")] = None,
    since: Annotated[Optional[str], typer.Option(help="only tracklets captured at or after this time (ISO 8601)")] = None,
    until: Annotated[Optional[str], typer.Option(help="only tracklets captured at or before this time (ISO 8601); a date alone (2026-11-30) means the end of that day, so the day is included")] = None,
    exclude_same_camera_pid: Annotated[bool, typer.Option(help="leave out gallery entries of the query's identity seen by the query's camera (the HITSZ-VCM evaluation rule; needs an indexed query with a known identity)")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda: where --query-dir is embedded")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print the results as a JSON list")] = False,
) -> None:
    """Rank an index's tracklets against a query (cosine similarity, best first) with modality / camera filters."""
    from cmft.search.gallery import IndexFormatError, time_range

    if (query is None) == (query_dir is None):
        _fail("give exactly one of --query (an indexed tracklet) or --query-dir (a folder of frames)")
    if modality is not None and modality not in ("rgb", "ir", "any"):
        _fail(f"--modality must be rgb, ir or any, got {modality!r}")
    if top_k < 1:
        _fail(f"--top-k must be at least 1, got {top_k}")
    try:
        time_range(since, until)
    except IndexFormatError as e:
        _fail(str(e).replace("since:", "--since:").replace("until:", "--until:"))
    index = _open_for_reading(index_dir)
    exclude: list[int] = []
    if query is not None:
        qid = _resolve_query(index, query)
        q_entry = index.entry(qid)
        q_vec, q_mod, label = index.embedding(qid), q_entry["modality"], f"#{qid} {q_entry['key']}"
        exclude.append(qid)  # never the query itself
        if exclude_same_camera_pid:
            if q_entry["pid"] is None:
                _fail(f"--exclude-same-camera-pid: query #{qid} has no known identity (pid)")
            exclude += [i for i in index.ids_where(q_entry["pid"], q_entry["camera"]) if i != qid]
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
            check_model(index, extractor_meta(ex, checkpoint=str(checkpoint)), getattr(index, "uri", getattr(index, "_label", index_dir)))
        except IndexFormatError as e:
            _fail(str(e))
        q_vec, q_mod, label = ex([frames], query_modality)[0], query_modality, str(query_dir)
    target = modality or ("rgb" if q_mod == "ir" else "ir")
    try:
        hits = index.search(q_vec[None], k=top_k, modality=None if target == "any" else target, cameras=camera,
                            exclude=exclude, since=since, until=until)[0]
    except IndexFormatError as e:
        _fail(str(e))
    rows = []
    for rank, (gid, score) in enumerate(hits, 1):
        e = index.entry(gid)
        rows.append({"rank": rank, "id": gid, "key": e["key"], "camera": e["camera"], "modality": e["modality"],
                     "pid": e["pid"], "score": score, "time": e["time"], "captured": e.get("captured"), "source": e["source"],
                     "thumbnail": e["thumbnail"]})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    where = f"{target} entries" + (f", cameras {', '.join(map(str, camera))}" if camera else "")
    where += f", captured {since or '...'} to {until or '...'}" if since or until else ""
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
    """Add ``index``, ``prune`` and ``search`` to ``app``."""
    app.command("index")(index_cmd)
    app.command("prune")(prune_cmd)
    app.command("search")(search_cmd)
