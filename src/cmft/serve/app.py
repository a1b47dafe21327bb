"""The gallery search service: JSON API and web page over a gallery store (:class:`~cmft.search.store.GalleryStore`).

``create_app(index_folder)`` loads the index once and returns a FastAPI app; nothing lives at module level.
The checkpoint's :class:`~cmft.inference.Extractor` is built on the first upload search only (searching by a
gallery id needs no model). Everything a client sends is checked before use: uploaded frames must be
JPEG, PNG or BMP by content type *and* by their first bytes, fit the size and count limits and decode with
PIL; they are written, under generated names, only to a temporary folder that is removed after the search.
Files are served from two places only: the package's ``static`` folder (the page) and the index's
``thumbs`` folder (thumbnails, resolved and checked to stay inside it).
"""

from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_K = 1000
MAX_PAGE = 500
MB = 1024 * 1024
# magic bytes -> (PIL format, file suffix); content types accepted for each family
MAGIC = ((b"\xff\xd8\xff", "JPEG", ".jpg"), (b"\x89PNG\r\n\x1a\n", "PNG", ".png"), (b"BM", "BMP", ".bmp"))
CONTENT_TYPES = {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/bmp", "image/x-bmp", "image/x-ms-bmp"}
FORM_FIELDS = {"modality", "k", "cameras", "target"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # the page loads nothing but its own files; uploaded-frame previews are blob: URLs
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
}


class SearchRequest(BaseModel):
    """``POST /search``: rank the gallery against a tracklet already in the index."""

    model_config = ConfigDict(extra="forbid")
    id: int = Field(description="id of the query tracklet in the index")
    k: int = Field(10, ge=1, le=MAX_K, description="how many results")
    modality: Optional[Literal["rgb", "ir", "any"]] = Field(
        None, description="gallery modality to search: rgb, ir, any; default: the other modality than the query's")
    cameras: Optional[list[int]] = Field(None, description="only gallery tracklets from these cameras")
    since: Optional[str] = Field(None, description="only gallery tracklets captured at or after this time (ISO 8601)")
    until: Optional[str] = Field(None, description="only gallery tracklets captured at or before this time (ISO 8601)")


def _detail(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def _shown_name(name: Optional[str], i: int) -> str:
    """A client's file name, safe to quote in a message: printable, at most 80 characters."""
    name = "".join(c for c in (name or "") if c.isprintable())[:80]
    return f"frame {i + 1} ({name!r})" if name else f"frame {i + 1}"


def _sniff(data: bytes) -> Optional[tuple[str, str]]:
    for magic, fmt, suffix in MAGIC:
        if data.startswith(magic):
            return fmt, suffix
    return None


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        parts.append(f"{'.'.join(loc) + ': ' if loc else ''}{e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _checkpoint_path(given: Optional[str | Path], meta: dict[str, Any], folder: Path) -> Optional[Path]:
    """The argument, else the index's recorded checkpoint (as written, or relative to the index folder)."""
    if given is not None:
        return Path(given)
    recorded = meta.get("checkpoint")
    if not isinstance(recorded, str) or not recorded:
        return None
    path = Path(recorded)
    if not path.is_absolute() and not path.exists() and (folder / path).exists():
        path = folder / path
    return path


def create_app(index_folder: str | Path, checkpoint: Optional[str | Path] = None, device: str = "cpu",
               max_upload_mb: float = 20, max_frames: int = 64, max_frame_pixels: int = 16_000_000) -> FastAPI:
    """The search service over the index saved in ``index_folder``.

    ``checkpoint`` embeds uploaded query frames (default: the checkpoint recorded in the index); it is
    loaded on the first upload. ``max_upload_mb`` bounds each frame and the whole upload, ``max_frames`` the
    frames of one upload, ``max_frame_pixels`` one frame's width x height. Raises what
    :func:`~cmft.search.store.open_store` raises for a missing or malformed store. The store is opened read-only;
    every request sees what a concurrent ``cmft index`` has committed by then.
    """
    from cmft.search.index import IndexFormatError
    from cmft.search.milvus import open_gallery
    from cmft.search.store import parse_time

    index = open_gallery(index_folder, readonly=True)
    folder = Path(index.path)  # the store folder (thumbnails, a checkpoint path relative to it)
    meta = index.meta
    ckpt_path = _checkpoint_path(checkpoint, meta, folder)
    thumbs_root = (folder / "thumbs").resolve()
    max_bytes = int(max_upload_mb * MB)

    dim = int(index.dim)

    extractor_lock = threading.Lock()
    state: dict[str, Any] = {"extractor": None}

    def extractor() -> Any:
        """The checkpoint's Extractor, built once (503 when there is no usable checkpoint)."""
        with extractor_lock:
            if state["extractor"] is None:
                if ckpt_path is None:
                    raise _detail(503, "upload search needs a checkpoint: the index records none; start the service with --checkpoint")
                from cmft.inference import Extractor

                try:
                    ex = Extractor(ckpt_path, device=device)
                except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
                    raise _detail(503, f"cannot load the checkpoint {ckpt_path.name}: {e}") from None
                if meta.get("fingerprint") or ex.dim != dim:  # the index's own model, or no comparable embeddings
                    from cmft.search.indexing import check_model, extractor_meta

                    try:
                        check_model(index, extractor_meta(ex, checkpoint=str(ckpt_path)), "upload search")
                    except IndexFormatError as e:
                        raise _detail(503, f"checkpoint {ckpt_path.name} does not fit the index: {e}") from None
                state["extractor"] = ex
            return state["extractor"]

    def public(entry: dict[str, Any]) -> dict[str, Any]:
        out = dict(entry)
        out["n_frames"] = len(entry.get("frames") or [])
        out["thumbnail_url"] = f"/tracklets/{entry['id']}/thumbnail" if entry.get("thumbnail") else None
        return out

    def brief(entry: dict[str, Any]) -> dict[str, Any]:
        out = public(entry)
        out.pop("frames", None)
        return out

    def lookup(tid: int) -> dict[str, Any]:
        try:  # entries are read from the store as committed: a concurrent `cmft index`'s adds are seen at once
            return index.entry(tid)
        except IndexFormatError:
            raise _detail(404, f"no tracklet with id {tid} in the index ({len(index)} tracklets)") from None

    def ranked(query_vec: np.ndarray, query_modality: str, query_pid: Optional[int], k: int, target: Optional[str],
               cams: Optional[list[int]], exclude: Optional[list[int]], since: Optional[str] = None,
               until: Optional[str] = None) -> tuple[Optional[str], list[dict[str, Any]]]:
        modality = ({"rgb": "ir", "ir": "rgb"}[query_modality] if target is None else None if target == "any" else target)
        q = np.asarray(query_vec, dtype=np.float32).reshape(1, -1)
        for name, value in (("since", since), ("until", until)):
            try:
                parse_time(value, name)
            except IndexFormatError as e:
                raise _detail(422, str(e)) from None
        hits = index.search(q, k=k, modality=modality, cameras=cams or None, exclude=exclude or None, since=since, until=until)[0]
        results = []
        for rank, (tid, score) in enumerate(hits, 1):
            e = public(index.entry(int(tid)))
            pid = e.get("pid")
            match = None if query_pid is None or pid is None else bool(int(pid) == int(query_pid))
            results.append({"rank": rank, "score": float(score), **e, "match": match})
        return modality or "any", results

    app = FastAPI(title="cmft gallery search", version="1", docs_url=None, redoc_url=None,  # no CDN-hosted docs UI
                  description="Cross-modal (visible / infrared) person search over a cmft gallery index.")
    app.state.index = index
    app.state.index_folder = folder

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_message(exc),
                                                      "errors": jsonable_encoder(exc.errors(), custom_encoder={bytes: repr})})

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and what the index holds."""
        index.refresh()
        summary = index.summary()
        return {
            "status": "ok", "entries": len(index), "dim": dim, "modalities": summary["modalities"],
            "cameras": summary["cameras"], "identities": summary["identities"],
            "kind": index.kind, "model": meta.get("model"), "datasets": summary["datasets"],
            "checkpoint": ckpt_path.name if ckpt_path is not None else None,
            "uploads": ckpt_path is not None and ckpt_path.is_file(), "extractor_loaded": state["extractor"] is not None,
            "limits": {"max_upload_mb": max_upload_mb, "max_frames": max_frames, "max_frame_pixels": max_frame_pixels,
                       "max_k": MAX_K, "max_page": MAX_PAGE},
        }

    app.state.health = health

    @app.get("/tracklets")
    def list_tracklets(
        modality: Optional[Literal["rgb", "ir"]] = Query(None, description="only this modality"),
        camera: Optional[int] = Query(None, description="only this camera"),
        pid: Optional[int] = Query(None, description="only this identity"),
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=MAX_PAGE),
    ) -> dict[str, Any]:
        """A page of index entries in id order (without frame paths; ``n_frames`` counts them)."""
        total, items = index.page(offset, limit, modality=modality, camera=camera, pid=pid)
        return {"total": total, "offset": offset, "limit": limit, "items": [brief(e) for e in items]}

    @app.get("/tracklets/{id}")
    def get_tracklet(id: int) -> dict[str, Any]:  # noqa: A002 - the API's name
        """One index entry with its frame paths."""
        return public(lookup(id))

    @app.get("/tracklets/{id}/thumbnail", response_class=FileResponse)
    def get_thumbnail(id: int) -> FileResponse:  # noqa: A002 - the API's name
        """The entry's thumbnail JPEG, read only from the index's ``thumbs`` folder."""
        tid = id
        rel = lookup(tid).get("thumbnail")
        if not rel:
            raise _detail(404, f"tracklet {tid} has no thumbnail")
        path = None
        if isinstance(rel, str) and "\x00" not in rel and not Path(rel).is_absolute():
            candidate = (folder / rel).resolve()
            if candidate.is_relative_to(thumbs_root) and candidate.suffix.lower() in (".jpg", ".jpeg") and candidate.is_file():
                path = candidate
        if path is None:
            raise _detail(404, f"tracklet {tid}: thumbnail not found in the index's thumbs folder")
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/search")
    def search(body: SearchRequest) -> dict[str, Any]:
        """Rank the gallery for an indexed tracklet (itself excluded)."""
        q = lookup(body.id)
        modality, results = ranked(index.embedding(body.id), q["modality"], q.get("pid"), body.k, body.modality,
                                   body.cameras, [body.id], body.since, body.until)
        return {"query": public(q), "modality": modality, "k": body.k, "results": results}

    upload_schema = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["frames", "modality"],
        "properties": {
            "frames": {"type": "array", "items": {"type": "string", "format": "binary"},
                       "description": "the query tracklet's frames (JPEG, PNG or BMP), in temporal order"},
            "modality": {"type": "string", "enum": ["rgb", "ir"], "description": "the query's modality"},
            "k": {"type": "integer", "default": 10, "minimum": 1, "maximum": MAX_K},
            "cameras": {"type": "string", "description": "comma-separated gallery cameras, e.g. 1,3"},
            "target": {"type": "string", "enum": ["rgb", "ir", "any"], "description": "gallery modality (default: the other)"},
        }}}}}}

    @app.post("/search/upload", openapi_extra=upload_schema)
    async def search_upload(request: Request) -> dict[str, Any]:
        """Rank the gallery for an uploaded tracklet: image files (frames in upload order) and form fields."""
        length = request.headers.get("content-length")
        if length is None:
            raise _detail(411, "an upload needs a Content-Length header")
        try:
            length_n = int(length)
        except ValueError:
            raise _detail(400, f"bad Content-Length {length[:20]!r}") from None
        if length_n > max_bytes + MB:  # the limit plus room for the multipart headers and form fields
            raise _detail(413, f"upload of {length_n / MB:.1f} MB is over the {max_upload_mb:g} MB limit")
        if not request.headers.get("content-type", "").lower().startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise _detail(415, "send the frames as multipart/form-data (fields: frames, modality, k, cameras)")
        try:
            form = await request.form(max_files=max_frames, max_fields=len(FORM_FIELDS), max_part_size=64 * 1024)
        except StarletteHTTPException as e:  # what the multipart parser raises (FastAPI's is a subclass)
            if "files" in str(e.detail).lower():
                raise _detail(400, f"too many frames: at most {max_frames} per upload") from None
            if "fields" in str(e.detail).lower():
                raise _detail(400, f"too many form fields: the fields are {', '.join(sorted(FORM_FIELDS))}") from None
            raise _detail(400, f"malformed multipart upload: {e.detail}") from None
        except Exception as e:  # noqa: BLE001 - the multipart parser's own errors on broken bodies
            raise _detail(400, f"malformed multipart upload: {e}") from None
        try:
            return await _upload_search(form)
        finally:
            await form.close()

    async def _upload_search(form: Any) -> dict[str, Any]:
        files, fields = [], {}
        for name, value in form.multi_items():
            if isinstance(value, str):
                if name not in FORM_FIELDS:
                    raise _detail(400, f"unknown form field {name[:40]!r}; the fields are frames (files), {', '.join(sorted(FORM_FIELDS))}")
                fields[name] = value.strip()
            else:
                files.append(value)
        modality = fields.get("modality", "").lower()
        if modality not in ("rgb", "ir"):
            raise _detail(400, "form field 'modality' (the query's modality) is required: rgb or ir"
                          if not modality else f"form field 'modality' must be rgb or ir, got {modality[:20]!r}")
        target = fields.get("target", "").lower() or None
        if target not in (None, "rgb", "ir", "any"):
            raise _detail(400, f"form field 'target' must be rgb, ir or any, got {target[:20]!r}")
        try:
            k = int(fields.get("k") or 10)
        except ValueError:
            raise _detail(400, f"form field 'k' must be an integer, got {fields['k'][:20]!r}") from None
        if not 1 <= k <= MAX_K:
            raise _detail(400, f"form field 'k' must be between 1 and {MAX_K}, got {k}")
        cams = None
        if fields.get("cameras"):
            try:
                cams = [int(c) for c in fields["cameras"].strip("[] ").replace(",", " ").split()]
            except ValueError:
                raise _detail(400, f"form field 'cameras' must be integers separated by commas, got {fields['cameras'][:40]!r}") from None
        if not files:
            raise _detail(400, "no frames: upload one or more image files in the 'frames' field")
        if len(files) > max_frames:
            raise _detail(400, f"too many frames: {len(files)}, at most {max_frames} per upload")
        blobs, total = [], 0
        for i, f in enumerate(files):
            shown = _shown_name(f.filename, i)
            ctype = (f.content_type or "").split(";")[0].strip().lower()
            if ctype not in CONTENT_TYPES:
                raise _detail(415, f"{shown}: content type {ctype[:40] or 'missing'!r} is not JPEG, PNG or BMP")
            size = f.size if f.size is not None else None
            if size is not None and size > max_bytes:
                raise _detail(413, f"{shown} is {size / MB:.1f} MB, over the {max_upload_mb:g} MB limit")
            data = await f.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise _detail(413, f"{shown} is over the {max_upload_mb:g} MB limit")
            total += len(data)
            if total > max_bytes:
                raise _detail(413, f"the frames together are over the {max_upload_mb:g} MB limit")
            kind = _sniff(data)
            if kind is None:
                raise _detail(415, f"{shown}: the file is not a JPEG, PNG or BMP image (its first bytes say otherwise)")
            blobs.append((shown, data, *kind))
        await run_in_threadpool(_check_images, blobs, max_frame_pixels)
        return await run_in_threadpool(_embed_and_rank, blobs, modality, k, target, cams)

    def _embed_and_rank(blobs: list[tuple[str, bytes, str, str]], modality: str, k: int, target: Optional[str],
                        cams: Optional[list[int]]) -> dict[str, Any]:
        ex = extractor()
        with tempfile.TemporaryDirectory(prefix="cmft-upload-") as tmp:
            paths = []
            for i, (_, data, _, suffix) in enumerate(blobs):
                path = Path(tmp) / f"frame_{i:04d}{suffix}"  # our names, never the client's
                path.write_bytes(data)
                paths.append(str(path))
            with extractor_lock:
                try:
                    vec = ex([paths], modality)[0]
                except (OSError, ValueError) as e:
                    raise _detail(400, f"cannot embed the uploaded frames: {str(e).replace(tmp, '<upload>')}") from None
        searched, results = ranked(vec, modality, None, k, target, cams, None)
        query = {"id": None, "key": "upload", "camera": None, "modality": modality, "pid": None, "time": None,
                 "source": "upload", "frames": [b[0] for b in blobs], "thumbnail": None, "n_frames": len(blobs),
                 "thumbnail_url": None}
        return {"query": query, "modality": searched, "k": k, "results": results}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _check_images(blobs: list[tuple[str, bytes, str, str]], max_pixels: int) -> None:
    """Every frame decodes as the format its bytes claim, within the pixel limit (400 / 413 naming the frame)."""
    import warnings

    from PIL import Image

    for shown, data, fmt, _ in blobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                    w, h = img.size
                    if w * h > max_pixels:
                        raise _detail(413, f"{shown} is {w}x{h} pixels, over the {max_pixels} pixel limit")
                    if w < 1 or h < 1:
                        raise _detail(400, f"{shown} has no pixels")
                    img.load()
        except HTTPException:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _detail(413, f"{shown} has too many pixels") from None
        except Exception as e:  # noqa: BLE001 - PIL raises many types for broken files
            raise _detail(400, f"{shown} cannot be decoded as {fmt}: {e}") from None
