"""Fill a gallery store (:class:`~cmft.search.store.GalleryStore`) with a checkpoint's embeddings of tracklets.

* :func:`index_dataset`: every test tracklet of both modalities of a HITSZ-VCM (or ``cmft track`` export),
  SYSU-MM01 or RegDB tree;
* :func:`index_folders`: plain folders, each one tracklet of frame images, of one modality and camera;
* :func:`index_tracklets`: the common step (embed per modality in batches, write thumbnails, commit), one
  transaction per ``commit_every`` tracklets, so a killed run keeps what it committed and a re-run goes on.

An existing store is appended to: tracklets whose key is already indexed are skipped, and a store built by
another model (weights fingerprint, clip length or frame size) or of another width is refused. An index folder
of the old format (``cmft-gallery-index/1``) is converted first.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cmft.search.gallery import IndexFormatError, is_milvus
from cmft.search.legacy import old_format
from cmft.search.store import GalleryStore, is_store, open_store

Progress = Callable[[int, int], None]
THUMB_HEIGHT = 128
THUMBS = "thumbs"
_FIELDS = ("key", "camera", "modality", "pid", "time", "source", "frames", "thumbnail", "id")


# -- the model's identity -------------------------------------------------------------------------------------
def model_fingerprint(extractor: Any) -> str:
    """``sha256:<hex>`` of the extractor's weights and buffers (names, dtypes, shapes, bytes), device-independent."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(extractor.model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update((t.float() if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def extractor_meta(extractor: Any, **extra: Any) -> dict:
    """What an index records about the model that embedded it (``extra``: e.g. ``checkpoint=path``)."""
    return {"model": extractor.model_name, "fingerprint": model_fingerprint(extractor), "dim": int(extractor.dim),
            "seq_len": int(extractor.seq_len), "height": int(extractor.height), "width": int(extractor.width),
            **{k: v for k, v in extra.items() if v is not None}}


def check_model(index: Any, mine: dict, where: Any) -> None:
    """Refuse to mix models: ``mine`` (:func:`extractor_meta`) must match the index's dim, weights and clips."""
    if index.dim != mine["dim"]:
        raise IndexFormatError(f"{where}: the index holds {index.dim}-wide embeddings but this checkpoint gives "
                               f"{mine['dim']}-wide ones; use the model that built the index, or a new index folder")
    theirs = index.meta
    if theirs.get("fingerprint") != mine["fingerprint"]:
        raise IndexFormatError(f"{where}: built with another model (checkpoint {theirs.get('checkpoint', '?')}, "
                               f"{str(theirs.get('fingerprint', '?'))[:19]}...) than this one (checkpoint "
                               f"{mine.get('checkpoint', '?')}, {mine['fingerprint'][:19]}...); embeddings of two "
                               "models cannot be compared: use the index's checkpoint, or a new index folder")
    for k in ("seq_len", "height", "width"):
        if theirs.get(k) != mine[k]:
            raise IndexFormatError(f"{where}: built with {k}={theirs.get(k)}, but the extractor uses {k}={mine[k]}")


def needs_upgrade(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` is a gallery folder of an old format (``cmft-gallery-index/1`` or ``cmft-gallery-store/2``)."""
    return not is_milvus(folder) and "://" not in str(folder) and old_format(Path(folder)) is not None


def open_index(folder: str | os.PathLike[str], extractor: Any, kind: str = "flat", meta: dict | None = None) -> Any:
    """The gallery at ``folder`` (a store folder or URI, or a Milvus URI / Milvus Lite ``*.db`` file) if there is one
    (an old-format folder is migrated), else a new empty one; checked against the extractor either way (another
    process may have created it a moment before). ``kind``: "flat" (exact) or "ivf" (approximate; "hnsw" is the old
    name)."""
    kind = "ivf" if kind == "hnsw" else kind
    mine = extractor_meta(extractor, **(meta or {}))
    if is_milvus(folder):
        from cmft.search.milvus import MilvusGallery

        gallery: Any = MilvusGallery(str(folder))
        if not gallery.dim:
            return MilvusGallery.create(str(folder), mine["dim"], kind, meta=mine)
        where: Any = folder
    elif "://" in str(folder) or is_store(folder) or needs_upgrade(folder):
        gallery = open_store(folder)
        where = gallery._label
    else:
        path = Path(folder)
        if path.is_dir() and any(p.name not in ("gallery.lance", "thumbs", ".write.lock", "crops") for p in path.iterdir()):
            raise IndexFormatError(f"{folder}: not empty and not a gallery store; choose another --store")
        gallery = GalleryStore.create(path, mine["dim"], kind, meta=mine, exist_ok=True)
        where = gallery._label
    try:
        check_model(gallery, mine, where)
        if gallery.kind != kind:
            raise IndexFormatError(f"{folder}: the index is {'approximate' if gallery.kind == 'ivf' else 'exact'} ({gallery.kind!r}), "
                                   f"not {kind!r} ({'pass --approximate' if gallery.kind == 'ivf' else 'leave out --approximate'} to extend it)")
    except IndexFormatError:
        gallery.close()
        raise
    return gallery


# -- the common step ------------------------------------------------------------------------------------------
def _write_thumbnail(frame: str, dest: Path) -> None:
    from PIL import Image

    with Image.open(frame) as img:
        im = img.convert("RGB")
    w = max(1, round(im.width * THUMB_HEIGHT / im.height))
    im = im.resize((w, THUMB_HEIGHT), Image.BILINEAR)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            im.save(fh, format="JPEG", quality=90)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def index_tracklets(extractor: Any, items: Sequence[dict], store: Any, progress: Progress | None = None,
                    commit_every: int = 256) -> list[int]:
    """Embed ``items`` (entry dicts whose ``frames`` are the tracklet's image paths, :func:`embed_items`) and add them
    to ``store`` in order, ``commit_every`` tracklets per commit (:func:`commit_items`). Returns the new ids.

    A key repeated in ``items`` is an error raised before any work. Keys already in the store are skipped, looked up
    again before each batch: another ``cmft index`` into the same store may be adding the same tracklets."""
    folder = Path(store.path)
    seen: set[str] = set()
    for it in items:
        key = it.get("key")
        if key in seen:
            raise IndexFormatError(f"{folder}: key {key!r} appears twice; nothing was added")
        if it.get("modality") not in ("rgb", "ir"):
            raise IndexFormatError(f"key {key!r}: modality must be 'rgb' or 'ir', got {it.get('modality')!r}")
        if not it.get("frames"):
            raise IndexFormatError(f"key {key!r}: a tracklet needs at least one frame")
        seen.add(key)
    ids: list[int] = []
    done = 0
    for first in range(0, len(items), commit_every):
        batch = items[first:first + commit_every]
        present = store.find_keys([it["key"] for it in batch])
        part = [it for it in batch if it["key"] not in present]
        done += len(batch) - len(part)
        emb = embed_items(extractor, part, progress, done, len(items))
        done += len(part)
        ids += commit_items(store, emb, part)
    return ids


def embed_items(extractor: Any, items: Sequence[dict], progress: Progress | None = None, done: int = 0,
                total: int | None = None) -> Any:
    """``[len(items), dim]`` float32 embeddings of entry dicts (their ``frames``), each modality's items together in
    batches of ``extractor.batch_size``; ``progress(done + n, total)`` after each batch."""
    import numpy as np

    step = max(1, int(getattr(extractor, "batch_size", 32)))
    emb = np.zeros((len(items), int(extractor.dim)), np.float32)
    for modality in ("ir", "rgb"):
        rows = [i for i, it in enumerate(items) if it["modality"] == modality]
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            emb[chunk] = extractor([list(items[i]["frames"]) for i in chunk], modality)
            done += len(chunk)
            if progress is not None:
                progress(done, total if total is not None else len(items))
    return emb


def commit_items(store: Any, embeddings: Any, items: Sequence[dict]) -> list[int]:
    """Add embedded items to ``store`` in one commit, each with a thumbnail ``thumbs/<id>-<random>.jpg`` (the middle
    frame, 128 px high; a unique name, so a thumbnail is never shared by a deleted entry and its re-added key)
    written before the commit; keys already in the store are left out. Returns the new ids."""
    folder = Path(store.path)
    (folder / THUMBS).mkdir(parents=True, exist_ok=True)

    def thumbnails(ids: list[int], entries: list[dict]) -> None:  # before the commit
        for i, e in zip(ids, entries):
            e["thumbnail"] = f"{THUMBS}/{i}-{os.urandom(4).hex()}.jpg"
            _write_thumbnail(e["frames"][len(e["frames"]) // 2], folder / e["thumbnail"])

    entries = []
    for it in items:
        frames = [str(f) for f in it["frames"]]
        entries.append({"key": it["key"], "camera": it["camera"], "modality": it["modality"], "pid": it.get("pid"),
                        "time": it.get("time"), "source": str(it.get("source") or frames[0]), "frames": frames,
                        "thumbnail": None, **{k: v for k, v in it.items() if k not in _FIELDS}})
    if not entries:
        return []
    return store.add(embeddings, entries, hook=thumbnails, skip_existing=True)


# -- datasets -------------------------------------------------------------------------------------------------
def dataset_items(root: str | os.PathLike[str], dataset: str = "auto") -> tuple[str, list[dict]]:
    """``(dataset name, entries without embeddings)`` for every test tracklet of both modalities, as the dataset's
    record says (:data:`~cmft.data.datasets.registry.RECORDS`).

    HITSZ-VCM (and ``cmft track`` exports): the test split (query and gallery rows, >= 12 frames); SYSU-MM01 and
    LLCM: every test image of both modalities (not one gallery draw); RegDB: split 1's test lists; BUPTCampus: the
    query and gallery rows of both modalities. Keys are the absolute path of each tracklet's first frame; a
    ``cmft track`` export's tracklets carry their source video, frames and capture time."""
    from cmft.data.datasets.registry import dataset_record, detect_dataset
    from cmft.tracking.export import manifest_records

    root = Path(root).resolve()
    name = detect_dataset(root) if dataset == "auto" else dataset
    tracklets = dataset_record(name).index_tracklets(root)
    records = manifest_records(root) if name == "hitsz_vcm" else {}
    items, seen = [], set()
    for t in tracklets:
        key = str(t.paths[0])
        if key in seen:  # two rows of the same frames (a malformed info file): index the first
            continue
        seen.add(key)
        item = {"key": key, "camera": int(t.camid), "modality": t.modality, "pid": int(t.pid), "time": None,
                "source": key, "frames": list(t.paths), "dataset": name, "root": str(root)}
        try:
            rec = records.get(str(Path(key).relative_to(root)))
        except ValueError:
            rec = None
        if rec:
            item.update(rec)
        items.append(item)
    return name, items


def index_dataset(extractor: Any, root: str | os.PathLike[str], folder: str | os.PathLike[str], dataset: str = "auto",
                  kind: str = "flat", progress: Progress | None = None, *, meta: dict | None = None,
                  commit_every: int = 256) -> Any:
    """Index every test tracklet of both modalities of a dataset tree into the store at ``folder`` (created or
    appended to: keys already there are skipped). ``meta`` is recorded in a new store (e.g. ``{"checkpoint": path}``)."""
    _, items = dataset_items(root, dataset)
    store = open_index(folder, extractor, kind, meta)
    index_tracklets(extractor, items, store, progress, commit_every)
    return store


def index_folders(extractor: Any, folders: Sequence[str | os.PathLike[str]], modality: str, camera: int,
                  folder: str | os.PathLike[str], kind: str = "flat", progress: Progress | None = None, *,
                  meta: dict | None = None, captured: Any = None, commit_every: int = 256) -> Any:
    """Index plain tracklet folders (each a folder of frame images, naturally sorted) of one modality and camera;
    the key of each is its absolute path, its identity unknown; ``captured`` (ISO 8601) is their capture time.
    Folders already indexed are skipped."""
    from cmft.inference.extractor import frame_paths

    if modality not in ("rgb", "ir"):
        raise ValueError(f"modality must be 'rgb' or 'ir', got {modality!r}")
    if isinstance(camera, bool) or not isinstance(camera, int):
        raise ValueError(f"camera must be an integer, got {camera!r}")
    items, seen = [], set()
    for f in folders:
        p = Path(f).resolve()
        if str(p) in seen:
            continue
        seen.add(str(p))
        items.append({"key": str(p), "camera": camera, "modality": modality, "pid": None, "time": None,
                      "source": str(p), "frames": frame_paths(p), "dataset": "folders",
                      **({"captured": str(captured)} if captured is not None else {})})
    store = open_index(folder, extractor, kind, meta)
    index_tracklets(extractor, items, store, progress, commit_every)
    return store


__all__ = ["check_model", "commit_items", "dataset_items", "embed_items", "extractor_meta", "index_dataset", "index_folders",
           "index_tracklets", "model_fingerprint", "needs_upgrade", "open_index"]
