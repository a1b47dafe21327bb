"""``cmft ingest``: the manifest, capture times through track/index/search/serve, exactly-once on re-runs, a failing
video reported by name, and Ray workers giving the plain loop's gallery.

The footage (PETS09-S2L1) and the Yolo-Fastest weights live in ``../shared/data``; tests that need them skip when
it is absent."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cmft.cli import app
from cmft.ingest import IngestManifestError, read_manifest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PETS = DATA / "mot15" / "PETS09-S2L1" / "vtest.avi"
YF = DATA / "weights" / "yolo_fastest"
BODY = f"darknet:{YF / 'yolo-fastest-1.1_body.cfg'}:{YF / 'yolo-fastest-1.1_body.weights'}"
needs_footage = pytest.mark.skipif(not PETS.is_file() or not (YF / "yolo-fastest-1.1_body.weights").is_file(),
                                   reason="PETS09-S2L1 or Yolo-Fastest not found in ../shared/data")
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four 50-frame clips (5 s at 10 fps) of PETS09."""
    if not PETS.is_file():
        pytest.skip("PETS09-S2L1 not found in ../shared/data")
    from cmft.tracking.video import write_segments

    return write_segments(PETS, tmp_path_factory.mktemp("clips"), 50, count=4)


def write_manifest(path: Path, rows: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(rows), encoding="utf-8")
    return path


def ingest(*args: str) -> tuple[int, dict]:
    r = CliRunner().invoke(app, ["ingest", *args, "--json"])
    assert r.exit_code in (0, 1), r.output
    return r.exit_code, json.loads(r.stdout)


# -- the manifest ---------------------------------------------------------------------------------------------------
def test_manifest_yaml_and_csv_read_alike(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").touch()
    y = write_manifest(tmp_path / "m.yaml", [{"path": "a.mp4", "camera": 3, "modality": "IR", "start": "2026-12-01T08:00:00Z"},
                                             {"path": str(tmp_path / "b"), "camera": 4, "modality": "rgb",
                                              "start": "2026-12-01T08:00:00+01:00", "fps": 12.5}])
    c = tmp_path / "m.csv"
    c.write_text(f"path,camera,modality,start,fps\na.mp4,3,IR,2026-12-01T08:00:00Z,\n{tmp_path / 'b'},4,rgb,"
                 "2026-12-01T08:00:00+01:00,12.5\n", encoding="utf-8")
    for rows in (read_manifest(y), read_manifest(c)):
        assert [(r.path, r.camera, r.modality, r.fps, r.row) for r in rows] == [
            ((tmp_path / "a.mp4").resolve(), 3, "ir", None, 1), ((tmp_path / "b").resolve(), 4, "rgb", 12.5, 2)]
    assert read_manifest(y)[0].video_id == read_manifest(c)[0].video_id


@pytest.mark.parametrize(("text", "suffix", "message"), [
    ("- {path: a.mp4, camera: 1, modality: uv, start: 2026-12-01}", "yaml", r"row 1: modality must be rgb or ir"),
    ("- {path: a.mp4, camera: one, modality: ir, start: 2026-12-01}", "yaml", r"row 1: camera must be"),
    ("- {path: a.mp4, camera: 1, modality: ir, start: noon}", "yaml", r"row 1: start: 'noon' is not an ISO 8601"),
    ("- {path: a.mp4, camera: 1, modality: ir}", "yaml", r"row 1: 'start' is missing"),
    ("- {path: a.mp4, camera: 1, modality: ir, start: 2026-12-01, fps: -3}", "yaml", r"row 1: fps must be"),
    ("- {path: a.mp4, camera: 1, modality: ir, start: 2026-12-01, colour: red}", "yaml", r"unknown field\(s\) \['colour'\]"),
    ("- {path: a.mp4, camera: 1, modality: ir, start: 2026-12-01}\n- {path: a.mp4, camera: 1, modality: ir, start: 2026-12-01}",
     "yaml", r"row 2 repeats row 1"),
    ("videos: 3", "yaml", r"expected a list of videos"),
    ("[", "yaml", r"not valid YAML"),
    ("path,camera,modality\na.mp4,1,ir\n", "csv", r"missing \['start'\]"),
    ("path,camera,modality,start\n", "csv", r"no video rows"),
])
def test_manifest_errors_name_the_file_row_and_field(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    path = tmp_path / f"m.{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(IngestManifestError, match=message) as e:
        read_manifest(path)
    assert str(path) in str(e.value)
    r = CliRunner().invoke(app, ["ingest", str(path), "--checkpoint", str(path), "--store", str(tmp_path / "s"),
                                 "--detector", "hog"])
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output


def test_bad_detector_or_checkpoint_stop_before_any_work(tiny_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "a.mp4").touch()
    manifest = write_manifest(tmp_path / "m.yaml", [{"path": "a.mp4", "camera": 1, "modality": "ir", "start": "2026-12-01"}])
    base = ["ingest", str(manifest), "--store", str(tmp_path / "s"), "--workers", "0"]
    r = CliRunner().invoke(app, [*base, "--checkpoint", str(tiny_checkpoint), "--detector", "darknet:no.cfg:no.weights"])
    assert r.exit_code == 2 and "no.cfg" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, [*base, "--checkpoint", str(tmp_path / "none.pt"), "--detector", "hog"])
    assert r.exit_code == 2 and "none.pt: no such checkpoint" in r.output
    assert not (tmp_path / "s").exists()


# -- capture times, end to end --------------------------------------------------------------------------------------
@needs_footage
def test_ingest_search_and_serve_by_capture_time(clips: list[Path], tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Two RGB videos an hour apart and an IR one between them: the gallery holds each tracklet's capture time
    (start + first frame / fps), `cmft search --since/--until` returns exactly the tracklets captured in a window,
    and so does `cmft serve`'s /search; a re-run adds nothing; a corrupt video fails by name, the rest lands."""
    from fastapi.testclient import TestClient

    from cmft.search.store import open_store
    from cmft.serve.app import create_app

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    starts = [T0, T0 + timedelta(minutes=30), T0 + timedelta(hours=1)]
    manifest = write_manifest(tmp_path / "day.yaml", [
        {"path": str(clips[0]), "camera": 1, "modality": "rgb", "start": iso(starts[0])},
        {"path": str(clips[1]), "camera": 2, "modality": "ir", "start": iso(starts[1])},
        {"path": str(clips[2]), "camera": 3, "modality": "rgb", "start": iso(starts[2])},
        {"path": str(corrupt), "camera": 4, "modality": "rgb", "start": iso(starts[2])},
    ])
    store = tmp_path / "store"
    common = ["--checkpoint", str(tiny_checkpoint), "--store", str(store), "--detector", BODY, "--device", "cpu", "--workers", "0"]
    code, summary = ingest(str(manifest), *common)
    assert code == 1 and summary["videos"] == 4 and summary["failed"] == 1
    assert [v["status"] for v in summary["per_video"]] == ["ok", "ok", "ok", "failed"]
    assert str(corrupt) in summary["per_video"][3]["error"] and summary["failed_videos"][0]["path"] == str(corrupt)
    assert summary["frames"] == 150 and summary["tracklets"] == sum(v["tracklets"] for v in summary["per_video"])

    with open_store(store, readonly=True) as s:
        entries = s.entries()
    assert len(entries) == summary["tracklets"] and all(e["pid"] is None for e in entries)
    by_video = {str(c): [e for e in entries if e["video"] == str(c)] for c in clips[:3]}
    assert all(by_video.values())
    for (clip, es), start in zip(by_video.items(), starts):
        for e in es:  # captured = start + first frame / 10 fps
            want = start + timedelta(seconds=e["video_frames"][0] / 10)
            assert datetime.fromisoformat(e["captured"].replace("Z", "+00:00")) == want, e

    def captured(e: dict) -> datetime:
        return datetime.fromisoformat(e["captured"].replace("Z", "+00:00"))

    query = by_video[str(clips[1])][0]  # an IR tracklet: the search looks among RGB ones
    rgb = [e for e in entries if e["modality"] == "rgb"]
    middle = sorted(captured(e) for e in by_video[str(clips[0])])[len(by_video[str(clips[0])]) // 2]
    windows = [(T0, T0 + timedelta(minutes=10)), (T0 + timedelta(minutes=50), T0 + timedelta(hours=2)),
               (middle, T0 + timedelta(minutes=59)), (T0 - timedelta(days=1), T0 - timedelta(hours=1))]
    with TestClient(create_app(store)) as client:
        for lo, hi in windows:
            want = {e["key"] for e in rgb if lo <= captured(e) <= hi}
            r = CliRunner().invoke(app, ["search", str(store), "--query", query["key"], "--top-k", "100",
                                         "--since", iso(lo) if lo.microsecond == 0 else lo.isoformat(), "--until", iso(hi), "--json"])
            assert r.exit_code == 0, r.output
            assert {x["key"] for x in json.loads(r.stdout)} == want, (lo, hi)
            body = client.post("/search", json={"id": query["id"], "k": 100, "since": lo.isoformat(), "until": hi.isoformat()})
            assert body.status_code == 200, body.text
            assert {x["key"] for x in body.json()["results"]} == want, (lo, hi)
    assert 0 < len({e["key"] for e in rgb if middle <= captured(e)}) < len(rgb)  # the third window cuts a video

    corrupt.unlink()  # the failed video gone from disk: the re-run skips the three ingested ones
    code, again = ingest(str(manifest), *common)
    assert code == 1 and again["tracklets"] == 0 and [v["status"] for v in again["per_video"]] == ["skipped"] * 3 + ["failed"]
    assert "no such video file" in again["per_video"][3]["error"]
    with open_store(store, readonly=True) as s:
        assert len(s.entries()) == len(entries)


@needs_footage
def test_track_start_time_reaches_index_and_search(clips: list[Path], tiny_checkpoint: Path, tmp_path: Path) -> None:
    """`cmft track --start-time` writes each tracklet's capture time into the export; `cmft index` carries it into
    the store, where the time filters find it."""
    from cmft.search.store import open_store
    from cmft.tracking.export import manifest_tracklets

    out, store = tmp_path / "export", tmp_path / "store"
    r = CliRunner().invoke(app, ["track", str(clips[0]), str(clips[1]), "--camera", "1", "--camera", "2", "--modality", "rgb",
                                 "--modality", "ir", "--detector", BODY, "--out", str(out),
                                 "--start-time", iso(T0), "--start-time", iso(T0 + timedelta(hours=1))])
    assert r.exit_code == 0, r.output
    tracklets = manifest_tracklets(out)
    assert tracklets and all(t["captured"] for t in tracklets)
    r = CliRunner().invoke(app, ["index", str(out), "--store", str(store), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    cut = T0 + timedelta(minutes=30)
    with open_store(store, readonly=True) as s:
        entries = s.entries()
        assert {e["key"]: e["captured"] for e in entries} == {t["files"][0]: t["captured"] for t in tracklets}
        late = s.search(s.embedding(entries[0]["id"])[None], k=100, since=iso(cut))[0]
    want = {e["id"] for e in entries if datetime.fromisoformat(e["captured"].replace("Z", "+00:00")) >= cut}
    assert {i for i, _ in late} == want and 0 < len(want) < len(entries)
    bad = CliRunner().invoke(app, ["track", str(clips[0]), "--camera", "1", "--modality", "rgb", "--detector", BODY,
                                   "--out", str(tmp_path / "x"), "--start-time", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO 8601 time" in bad.output


@needs_footage
def test_ray_workers_give_the_plain_loops_gallery(clips: list[Path], tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The same manifest through 2 Ray workers and through the plain loop: the same tracklets, captured times and
    embeddings (each worker uses one thread, as the plain loop here)."""
    pytest.importorskip("ray")
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"path": str(c), "camera": i + 1, "modality": "rgb" if i % 2 else "ir", "start": iso(T0 + timedelta(minutes=i))}
        for i, c in enumerate(clips)])
    from cmft.search.store import open_store

    got = {}
    for workers in ("0", "2"):
        store = tmp_path / f"store{workers}"
        code, summary = ingest(str(manifest), "--checkpoint", str(tiny_checkpoint), "--store", str(store), "--detector",
                               BODY, "--device", "cpu", "--workers", workers)
        assert code == 0 and summary["workers"] == int(workers) and summary["tracklets"] > 0
        with open_store(store, readonly=True) as s:  # keys are crop paths under STORE/crops: compare them below it
            got[workers] = {str(Path(e["key"]).relative_to(store / "crops")): (e["captured"], e["camera"], e["modality"],
                                                                                 s.embedding(e["id"])) for e in s.entries()}
    assert got["0"].keys() == got["2"].keys()
    for k, (cap, cam, mod, emb) in got["0"].items():
        assert got["2"][k][:3] == (cap, cam, mod)
        np.testing.assert_allclose(got["2"][k][3], emb, atol=1e-5)
