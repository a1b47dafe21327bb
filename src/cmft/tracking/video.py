"""Video input: a video file (anything OpenCV's FFmpeg backend decodes) or a folder of frame images.

Frames come out as ``(index, HxWx3 uint8 BGR)``; ``index`` is the 0-based position in the source, so
MOTChallenge frame numbers are ``index + 1``. A source that cannot be opened, or holds no decodable frame,
raises :class:`VideoError` naming the path before any work is done.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FOLDER_FPS = 25.0


class VideoError(ValueError):
    """A video source is missing, unreadable, corrupt or empty; the message names it."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known of a source before decoding it all (``num_frames`` is the container's claim for files)."""

    path: Path
    fps: float
    num_frames: int
    width: int
    height: int


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _folder_fps(folder: Path) -> float | None:
    """The frame rate a MOTChallenge ``seqinfo.ini`` beside (or in) an image folder declares, if any."""
    for ini in (folder / "seqinfo.ini", folder.parent / "seqinfo.ini"):
        if ini.is_file():
            parser = configparser.ConfigParser()
            try:
                parser.read(ini, encoding="utf-8")
                return float(parser["Sequence"]["frameRate"])
            except (configparser.Error, KeyError, ValueError):
                return None
    return None


class VideoReader:
    """Sequential frames of one source; use :func:`open_video` to make one."""

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        import cv2

        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(f"{self.path}: no such video file or frame folder")
        self._files: list[Path] | None = None
        if self.path.is_dir():
            self._files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
            if not self._files:
                raise VideoError(f"{self.path}: folder holds no frame images ({', '.join(IMAGE_SUFFIXES)})")
            first = self._imread(self._files[0])
            num_frames = len(self._files)
            native_fps = _folder_fps(self.path) or DEFAULT_FOLDER_FPS
        else:
            cap = cv2.VideoCapture(str(self.path))
            if not cap.isOpened():
                raise VideoError(f"{self.path}: cannot be opened as a video (corrupt, truncated or an unsupported format)")
            ok, first = cap.read()
            native_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            num_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            cap.release()
            if not ok or first is None:
                raise VideoError(f"{self.path}: holds no decodable frame (empty or corrupt video)")
            if not np.isfinite(native_fps) or native_fps <= 0 or native_fps > 1000:
                native_fps = DEFAULT_FOLDER_FPS
        height, width = first.shape[:2]
        self.info = VideoInfo(self.path, float(fps or native_fps), max(num_frames, 1), width, height)

    def _imread(self, file: Path) -> np.ndarray:
        import cv2

        img = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoError(f"{file}: not a readable image (corrupt or unsupported format)")
        return img

    def frames(self, indices: Iterable[int] | None = None, stride: int = 1, limit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` for every ``stride``-th frame, or only for the sorted ``indices`` given."""
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        wanted = None if indices is None else sorted(set(int(i) for i in indices))
        if self._files is not None:
            picks = wanted if wanted is not None else range(0, len(self._files), stride)
            for n, i in enumerate(picks):
                if limit is not None and n >= limit:
                    return
                if 0 <= i < len(self._files):
                    yield i, self._imread(self._files[i])
            return
        yield from self._video_frames(wanted, stride, limit)

    def _video_frames(self, wanted: list[int] | None, stride: int, limit: int | None) -> Iterator[tuple[int, np.ndarray]]:
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        try:
            want = iter(wanted) if wanted is not None else None
            target = next(want, None) if want is not None else 0
            index, emitted = 0, 0
            while target is not None and (limit is None or emitted < limit):
                if index < target:  # skipped frames are grabbed (demuxed and decoded) but not converted
                    if not cap.grab():
                        return
                    index += 1
                    continue
                ok, frame = cap.read()
                if not ok:
                    return
                yield index, frame
                emitted += 1
                index += 1
                target = next(want, None) if want is not None else target + stride
        finally:
            cap.release()


def open_video(path: str | Path, fps: float | None = None) -> VideoReader:
    """Open a video file or frame folder; ``fps`` overrides the rate the source declares."""
    return VideoReader(path, fps)


def write_segments(source: str | Path, out_dir: str | Path, length: int, count: int | None = None, start: int = 0,
                   fourcc: str = "mp4v") -> list[Path]:
    """Cut ``source`` into consecutive clips of ``length`` frames (from frame ``start``, at most ``count`` of them),
    written as ``<stem>-<first frame>.mp4`` at the source's rate: short camera videos for ingest tests and benchmarks.
    A last clip shorter than ``length`` is dropped."""
    import cv2

    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    reader = open_video(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    writer, frames, first = None, 0, start
    try:
        for index, frame in reader.frames():
            if index < start:
                continue
            if writer is None:
                if count is not None and len(written) >= count:
                    break
                first, frames = index, 0
                path = out_dir / f"{reader.path.stem}-{index:06d}.mp4"
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), reader.info.fps,
                                         (frame.shape[1], frame.shape[0]))
                if not writer.isOpened():
                    raise VideoError(f"{path}: OpenCV cannot write {fourcc} video here")
            writer.write(frame)
            frames += 1
            if frames == length:
                writer.release()
                writer = None
                written.append(path)
    finally:
        if writer is not None:  # a last, short clip
            writer.release()
            path.unlink(missing_ok=True)
    return written
