"""The gallery search service: JSON API and web page over a gallery (:class:`~cmft.search.gallery.Gallery`).

The routes live on an :class:`~fastapi.APIRouter`; ``create_app(store)`` opens the gallery read-only into a
:class:`SearchService` and returns a FastAPI app with the routes. Every request reads one pinned version.
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
from typing import Annotated, Any, Literal, Optional

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
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


class SearchService:
    """What the routes share: the gallery handle (opened read-only), the lazily built extractor and the limits.

    Each request reads through :meth:`view`, a handle pinned to the version committed when the request began: the
    entry, the embedding and the ranking of one request come from one version, and the next request sees new
    commits (a concurrent ``cmft index`` or ``cmft prune``)."""

    def __init__(self, gallery: Any, checkpoint: Optional[str | Path] = None, device: str = "cpu", max_upload_mb: float = 20,
                 max_frames: int = 64, max_frame_pixels: int = 16_000_000) -> None:
        self.gallery = gallery
        self.folder = Path(gallery.path)  # thumbnails, a checkpoint path relative to the store
        self.meta: dict[str, Any] = gallery.meta
        self.dim = int(gallery.dim)
        self.ckpt_path = _checkpoint_path(checkpoint, self.meta, self.folder)
        self.thumbs_root = (self.folder / "thumbs").resolve()
        self.device = device
        self.max_upload_mb, self.max_frames, self.max_frame_pixels = max_upload_mb, max_frames, max_frame_pixels
        self.max_bytes = int(max_upload_mb * MB)
        self._extractor: Any = None
        self.extractor_lock = threading.Lock()

    def view(self) -> Any:
        """The gallery pinned to its latest committed version."""
        return self.gallery.view()

    @property
    def extractor_loaded(self) -> bool:
        return self._extractor is not None

    def extractor(self) -> Any:
        """The checkpoint's Extractor, built once (503 when there is no usable checkpoint)."""
        from cmft.search.gallery import IndexFormatError

        with self.extractor_lock:
            if self._extractor is None:
                if self.ckpt_path is None:
                    raise _detail(503, "upload search needs a checkpoint: the index records none; start the service with --checkpoint")
                from cmft.inference import Extractor

                try:
                    ex = Extractor(self.ckpt_path, device=self.device)
                except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
                    raise _detail(503, f"cannot load the checkpoint {self.ckpt_path.name}: {e}") from None
                if self.meta.get("fingerprint") or ex.dim != self.dim:  # the index's own model, or no comparable embeddings
                    from cmft.search.indexing import check_model, extractor_meta

                    try:
                        check_model(self.gallery, extractor_meta(ex, checkpoint=str(self.ckpt_path)), "upload search")
                    except IndexFormatError as e:
                        raise _detail(503, f"checkpoint {self.ckpt_path.name} does not fit the index: {e}") from None
                self._extractor = ex
            return self._extractor

    @staticmethod
    def public(entry: dict[str, Any]) -> dict[str, Any]:
        out = dict(entry)
        out["n_frames"] = len(entry.get("frames") or [])
        out["thumbnail_url"] = f"/tracklets/{entry['id']}/thumbnail" if entry.get("thumbnail") else None
        return out

    def brief(self, entry: dict[str, Any]) -> dict[str, Any]:
        out = self.public(entry)
        out.pop("frames", None)
        return out

    @staticmethod
    def lookup(view: Any, tid: int) -> dict[str, Any]:
        from cmft.search.gallery import GalleryDamagedError, IndexFormatError

        try:
            return view.entry(tid)
        except GalleryDamagedError as e:
            raise _detail(500, str(e)) from None
        except IndexFormatError:
            raise _detail(404, f"no tracklet with id {tid} in the index ({len(view)} tracklets)") from None

    def ranked(self, view: Any, query_vec: np.ndarray, query_modality: str, query_pid: Optional[int], k: int,
               target: Optional[str], cams: Optional[list[int]], exclude: Optional[list[int]], since: Optional[str] = None,
               until: Optional[str] = None) -> tuple[str, list[dict[str, Any]]]:
        """The ranked results (with their entries) of one query in ``view``, and the modality searched."""
        from cmft.search.gallery import GalleryDamagedError, IndexFormatError, time_range

        modality = ({"rgb": "ir", "ir": "rgb"}[query_modality] if target is None else None if target == "any" else target)
        q = np.asarray(query_vec, dtype=np.float32).reshape(1, -1)
        try:
            time_range(since, until)
            hits = view.search(q, k=k, modality=modality, cameras=cams or None, exclude=exclude or None, since=since, until=until)[0]
        except GalleryDamagedError as e:
            raise _detail(500, str(e)) from None
        except IndexFormatError as e:
            raise _detail(422, str(e)) from None
        entries = {e["id"]: e for e in view.by_ids([t for t, _ in hits])}
        results = []
        for rank, (tid, score) in enumerate(hits, 1):
            e = self.public(entries[int(tid)])
            pid = e.get("pid")
            match = None if query_pid is None or pid is None else bool(int(pid) == int(query_pid))
            results.append({"rank": rank, "score": float(score), **e, "match": match})
        return modality or "any", results

    def health(self) -> dict[str, Any]:
        """Liveness and what the gallery holds."""
        view = self.view()
        summary = view.summary()
        return {
            "status": "ok", "entries": len(view), "dim": self.dim, "modalities": summary["modalities"],
            "cameras": summary["cameras"], "identities": summary["identities"],
            "kind": view.kind, "model": self.meta.get("model"), "datasets": summary["datasets"],
            "checkpoint": self.ckpt_path.name if self.ckpt_path is not None else None,
            "uploads": self.ckpt_path is not None and self.ckpt_path.is_file(), "extractor_loaded": self.extractor_loaded,
            "limits": {"max_upload_mb": self.max_upload_mb, "max_frames": self.max_frames, "max_frame_pixels": self.max_frame_pixels,
                       "max_k": MAX_K, "max_page": MAX_PAGE},
        }


router = APIRouter()


def _service(request: Request) -> SearchService:
    return request.app.state.service


Service = Annotated[SearchService, Depends(_service)]


@router.get("/health")
def health(svc: Service) -> dict[str, Any]:
    """Liveness and what the index holds."""
    return svc.health()


@router.get("/tracklets")
def list_tracklets(
    svc: Service,
    modality: Optional[Literal["rgb", "ir"]] = Query(None, description="only this modality"),
    camera: Optional[int] = Query(None, description="only this camera"),
    pid: Optional[int] = Query(None, description="only this identity"),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=MAX_PAGE),
) -> dict[str, Any]:
    """A page of index entries in id order (without frame paths; ``n_frames`` counts them)."""
    total, items = svc.view().page(offset, limit, modality=modality, camera=camera, pid=pid)
    return {"total": total, "offset": offset, "limit": limit, "items": [svc.brief(e) for e in items]}


@router.get("/tracklets/{id}")
def get_tracklet(id: int, svc: Service) -> dict[str, Any]:  # noqa: A002 - the API's name
    """One index entry with its frame paths."""
    return svc.public(svc.lookup(svc.view(), id))


@router.get("/tracklets/{id}/thumbnail", response_class=FileResponse)
def get_thumbnail(id: int, svc: Service) -> FileResponse:  # noqa: A002 - the API's name
    """The entry's thumbnail JPEG, read only from the index's ``thumbs`` folder."""
    rel = svc.lookup(svc.view(), id).get("thumbnail")
    if not rel:
        raise _detail(404, f"tracklet {id} has no thumbnail")
    path = None
    if isinstance(rel, str) and "\x00" not in rel and not Path(rel).is_absolute():
        candidate = (svc.folder / rel).resolve()
        if candidate.is_relative_to(svc.thumbs_root) and candidate.suffix.lower() in (".jpg", ".jpeg") and candidate.is_file():
            path = candidate
    if path is None:
        raise _detail(404, f"tracklet {id}: thumbnail not found in the index's thumbs folder")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@router.post("/search")
def search(body: SearchRequest, svc: Service) -> dict[str, Any]:
    """Rank the gallery for an indexed tracklet (itself excluded), all from one version of the gallery."""
    view = svc.view()
    q = svc.lookup(view, body.id)
    modality, results = svc.ranked(view, view.embedding(body.id), q["modality"], q.get("pid"), body.k, body.modality,
                                   body.cameras, [body.id], body.since, body.until)
    return {"query": svc.public(q), "modality": modality, "k": body.k, "results": results}


UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["frames", "modality"],
    "properties": {
        "frames": {"type": "array", "items": {"type": "string", "format": "binary"},
                   "description": "the query tracklet's frames (JPEG, PNG or BMP), in temporal order"},
        "modality": {"type": "string", "enum": ["rgb", "ir"], "description": "the query's modality"},
        "k": {"type": "integer", "default": 10, "minimum": 1, "maximum": MAX_K},
        "cameras": {"type": "string", "description": "comma-separated gallery cameras, e.g. 1,3"},
        "target": {"type": "string", "enum": ["rgb", "ir", "any"], "description": "gallery modality (default: the other)"},
    }}}}}}


@router.post("/search/upload", openapi_extra=UPLOAD_SCHEMA)
async def search_upload(request: Request) -> dict[str, Any]:
    """Rank the gallery for an uploaded tracklet: image files (frames in upload order) and form fields."""
    svc: SearchService = request.app.state.service
    length = request.headers.get("content-length")
    if length is None:
        raise _detail(411, "an upload needs a Content-Length header")
    try:
        length_n = int(length)
    except ValueError:
        raise _detail(400, f"bad Content-Length {length[:20]!r}") from None
    if length_n > svc.max_bytes + MB:  # the limit plus room for the multipart headers and form fields
        raise _detail(413, f"upload of {length_n / MB:.1f} MB is over the {svc.max_upload_mb:g} MB limit")
    if not request.headers.get("content-type", "").lower().startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise _detail(415, "send the frames as multipart/form-data (fields: frames, modality, k, cameras)")
    try:
        form = await request.form(max_files=svc.max_frames, max_fields=len(FORM_FIELDS), max_part_size=64 * 1024)
    except StarletteHTTPException as e:  # what the multipart parser raises (FastAPI's is a subclass)
        if "files" in str(e.detail).lower():
            raise _detail(400, f"too many frames: at most {svc.max_frames} per upload") from None
        if "fields" in str(e.detail).lower():
            raise _detail(400, f"too many form fields: the fields are {', '.join(sorted(FORM_FIELDS))}") from None
        raise _detail(400, f"malformed multipart upload: {e.detail}") from None
    except Exception as e:  # noqa: BLE001 - the multipart parser's own errors on broken bodies
        raise _detail(400, f"malformed multipart upload: {e}") from None
    try:
        return await _upload_search(svc, form)
    finally:
        await form.close()


async def _upload_search(svc: SearchService, form: Any) -> dict[str, Any]:
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
    if len(files) > svc.max_frames:
        raise _detail(400, f"too many frames: {len(files)}, at most {svc.max_frames} per upload")
    blobs, total = [], 0
    for i, f in enumerate(files):
        shown = _shown_name(f.filename, i)
        ctype = (f.content_type or "").split(";")[0].strip().lower()
        if ctype not in CONTENT_TYPES:
            raise _detail(415, f"{shown}: content type {ctype[:40] or 'missing'!r} is not JPEG, PNG or BMP")
        size = f.size if f.size is not None else None
        if size is not None and size > svc.max_bytes:
            raise _detail(413, f"{shown} is {size / MB:.1f} MB, over the {svc.max_upload_mb:g} MB limit")
        data = await f.read(svc.max_bytes + 1)
        if len(data) > svc.max_bytes:
            raise _detail(413, f"{shown} is over the {svc.max_upload_mb:g} MB limit")
        total += len(data)
        if total > svc.max_bytes:
            raise _detail(413, f"the frames together are over the {svc.max_upload_mb:g} MB limit")
        kind = _sniff(data)
        if kind is None:
            raise _detail(415, f"{shown}: the file is not a JPEG, PNG or BMP image (its first bytes say otherwise)")
        blobs.append((shown, data, *kind))
    await run_in_threadpool(_check_images, blobs, svc.max_frame_pixels)
    return await run_in_threadpool(_embed_and_rank, svc, blobs, modality, k, target, cams)


def _embed_and_rank(svc: SearchService, blobs: list[tuple[str, bytes, str, str]], modality: str, k: int,
                    target: Optional[str], cams: Optional[list[int]]) -> dict[str, Any]:
    ex = svc.extractor()
    with tempfile.TemporaryDirectory(prefix="cmft-upload-") as tmp:
        paths = []
        for i, (_, data, _, suffix) in enumerate(blobs):
            path = Path(tmp) / f"frame_{i:04d}{suffix}"  # our names, never the client's
            path.write_bytes(data)
            paths.append(str(path))
        with svc.extractor_lock:
            try:
                vec = ex([paths], modality)[0]
            except (OSError, ValueError) as e:
                raise _detail(400, f"cannot embed the uploaded frames: {str(e).replace(tmp, '<upload>')}") from None
    searched, results = svc.ranked(svc.view(), vec, modality, None, k, target, cams, None)
    query = {"id": None, "key": "upload", "camera": None, "modality": modality, "pid": None, "time": None,
             "source": "upload", "frames": [b[0] for b in blobs], "thumbnail": None, "n_frames": len(blobs),
             "thumbnail_url": None}
    return {"query": query, "modality": searched, "k": k, "results": results}


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def create_app(index_folder: str | Path, checkpoint: Optional[str | Path] = None, device: str = "cpu",
               max_upload_mb: float = 20, max_frames: int = 64, max_frame_pixels: int = 16_000_000) -> FastAPI:
    """The search service over the gallery at ``index_folder`` (a store folder or URI, a Milvus Lite file or a
    Milvus URI), opened read-only.

    ``checkpoint`` embeds uploaded query frames (default: the checkpoint recorded in the gallery); it is loaded on
    the first upload. ``max_upload_mb`` bounds each frame and the whole upload, ``max_frames`` the frames of one
    upload, ``max_frame_pixels`` one frame's width x height. Raises what :func:`~cmft.search.gallery.open_gallery`
    raises for a missing or malformed gallery."""
    from cmft.search.gallery import open_gallery

    svc = SearchService(open_gallery(index_folder, readonly=True), checkpoint, device, max_upload_mb, max_frames,
                        max_frame_pixels)
    app = FastAPI(title="cmft gallery search", version="1", docs_url=None, redoc_url=None,  # no CDN-hosted docs UI
                  description="Cross-modal (visible / infrared) person search over a cmft gallery.")
    app.state.service = svc
    app.state.index = svc.gallery
    app.state.index_folder = svc.folder
    app.state.health = svc.health

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

    app.include_router(router)
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
