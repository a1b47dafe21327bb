"""The ingest manifest: one camera video (a file or a frame folder) per row, with its camera, modality and the
capture time of its first frame.

YAML (a list of mappings, or ``{videos: [...]}``) or CSV with a header; columns :data:`COLUMNS`, ``fps`` optional.
Relative paths are relative to the manifest's folder. Every row is checked before any work: a malformed row is an
:class:`IngestManifestError` naming the file, the row and the field. A video that is missing or unreadable is not a
manifest error: it fails alone when its turn comes, and the rest carries on.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLUMNS = ("path", "camera", "modality", "start", "fps")
REQUIRED = ("path", "camera", "modality", "start")


class IngestManifestError(ValueError):
    """The manifest cannot be read; the message names the file, the row and what is wrong."""


@dataclass(frozen=True)
class VideoRow:
    """One video of the manifest, its path absolute."""

    path: Path
    camera: int
    modality: str  # rgb or ir
    start: str  # ISO 8601 capture time of the first frame
    fps: float | None = None  # overrides the rate the source declares (frame folders: seqinfo.ini or 25)
    row: int = 0  # 1-based position in the manifest

    @property
    def video_id(self) -> str:
        """What identifies this video's work: its path, camera, modality and start (16 hex digits)."""
        what = f"{self.path}|{self.camera}|{self.modality}|{self.start}|{self.fps}"
        return hashlib.sha1(what.encode()).hexdigest()[:16]

    @property
    def folder_name(self) -> str:
        """The folder of this video's crops: readable, and unique per :attr:`video_id`."""
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.path.name)[:48]
        return f"{stem}-{self.video_id}"

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "camera": self.camera, "modality": self.modality, "start": self.start,
                "fps": self.fps}


def read_manifest(path: str | Path) -> list[VideoRow]:
    """The rows of an ingest manifest (``.yaml``/``.yml``/``.csv``), checked; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise IngestManifestError(f"{path}: no such manifest file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise IngestManifestError(f"{path}: cannot be read ({e})") from None
    if path.suffix.lower() == ".csv":
        raw = _csv_rows(path, text)
    elif path.suffix.lower() in (".yaml", ".yml"):
        raw = _yaml_rows(path, text)
    else:
        raise IngestManifestError(f"{path}: a manifest is a .yaml, .yml or .csv file")
    if not raw:
        raise IngestManifestError(f"{path}: no video rows")
    rows = [_row(path, i + 1, r) for i, r in enumerate(raw)]
    seen: dict[str, int] = {}
    for r in rows:
        if r.video_id in seen:
            raise IngestManifestError(f"{path}: row {r.row} repeats row {seen[r.video_id]} ({r.path}, camera {r.camera}, "
                                      f"{r.modality}, {r.start})")
        seen[r.video_id] = r.row
    return rows


def _csv_rows(path: Path, text: str) -> list[dict]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise IngestManifestError(f"{path}: the header must name the columns {list(COLUMNS[:4])} (fps optional); "
                                  f"missing {missing}, found {header}")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise IngestManifestError(f"{path}: unknown column(s) {unknown}; the columns are {list(COLUMNS)}")
    return [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items() if k is not None}
            for r in reader if any((v or "").strip() for v in r.values() if isinstance(v, str))]


def _yaml_rows(path: Path, text: str) -> list[dict]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise IngestManifestError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(data, dict) and set(data) == {"videos"}:
        data = data["videos"]
    if not isinstance(data, list):
        raise IngestManifestError(f"{path}: expected a list of videos (or a mapping with one key, videos), "
                                  f"got {type(data).__name__}")
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            raise IngestManifestError(f"{path}: row {i + 1} is a {type(r).__name__}, not a mapping of {list(COLUMNS)}")
        unknown = [k for k in r if k not in COLUMNS]
        if unknown:
            raise IngestManifestError(f"{path}: row {i + 1}: unknown field(s) {unknown}; the fields are {list(COLUMNS)}")
    return data


def _row(path: Path, n: int, r: dict) -> VideoRow:
    from cmft.search.gallery import IndexFormatError, parse_time

    where = f"{path}: row {n}"
    for c in REQUIRED:
        if r.get(c) in (None, ""):
            raise IngestManifestError(f"{where}: {c!r} is missing")
    camera = r["camera"]
    if isinstance(camera, str) and camera.strip().lstrip("-").isdigit():
        camera = int(camera)
    if isinstance(camera, bool) or not isinstance(camera, int) or camera < 0:
        raise IngestManifestError(f"{where}: camera must be a non-negative integer, got {r['camera']!r}")
    modality = str(r["modality"]).lower()
    if modality not in ("rgb", "ir"):
        raise IngestManifestError(f"{where}: modality must be rgb or ir, got {r['modality']!r}")
    start = r["start"]
    start = start.isoformat() if hasattr(start, "isoformat") else str(start)  # YAML reads bare times as datetimes
    try:
        parse_time(start, f"{where}: start")
    except IndexFormatError as e:
        raise IngestManifestError(str(e)) from None
    fps = r.get("fps")
    if fps in (None, ""):
        fps = None
    else:
        try:
            fps = float(fps)
        except (TypeError, ValueError):
            fps = float("nan")
        if not 0 < fps <= 1000:
            raise IngestManifestError(f"{where}: fps must be a number in (0, 1000], got {r.get('fps')!r}")
    video = Path(str(r["path"])).expanduser()
    video = (video if video.is_absolute() else path.parent / video).resolve()
    return VideoRow(video, camera, modality, start, fps, n)
