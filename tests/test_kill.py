"""Kill tests on real subprocesses: ``cmft train`` SIGKILLed at seeded random moments (and at the moment a
checkpoint is being written) resumes to weights identical to an uninterrupted run; ``cmft regdb-trials``,
``cmft track`` appends and ``cmft index`` keep what they finished and re-run without duplicates."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cmft.engine.checkpoint import load_checkpoint

from conftest import tiny_train_overrides

KILLS = int(os.environ.get("CMFT_KILLS", "10"))  # 20 in the release check: CMFT_KILLS=20 (each kill now lands in training, after the imports)
EPOCHS = 3


def _overrides(vcm4: Path) -> list[str]:
    # a record in log.jsonl after every step tells the test that training has started; an evaluation every epoch
    # makes best.pt move along with last.pt
    return tiny_train_overrides(vcm4, f"train.epochs={EPOCHS}", "train.max_steps_per_epoch=2", "train.eval_every=1",
                                "data.workers=0", "train.log_every=1", "train.deterministic=true")  # exact on CUDA too


def _cmft(*args: str) -> list[str]:
    return [sys.executable, "-m", "cmft", *args]


def _finish(run: Path, vcm4: Path) -> None:
    """Complete a run after a kill: resume from last.pt, or start again when no epoch had finished."""
    where = ["--resume", str(run)] if (run / "last.pt").exists() else ["--out", str(run)]
    proc = subprocess.run(_cmft("train", *where, *_overrides(vcm4)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _logged(folder: Path) -> int:
    """Bytes of training records (every ``log.jsonl`` under ``folder``): they grow once a child has trained a step."""
    return sum(p.stat().st_size for p in folder.rglob("log.jsonl")) if folder.exists() else 0


def _spawn(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_in_training(proc: subprocess.Popen, run: Path, before: int, delay: float, at_write: bool) -> str:
    """SIGKILL ``proc`` ``delay`` seconds after it has logged a training step (its records grew past ``before``
    bytes), or, with ``at_write``, as soon as a checkpoint's temporary file appears: never in the imports."""
    while proc.poll() is None and _logged(run) <= before:
        time.sleep(0.005)
    return _kill_when(proc, run, time.perf_counter() + delay, at_write)


def _timed(cmd: list[str], run: Path) -> float:
    """Run ``cmd`` to the end; the seconds from its first logged training step to its exit."""
    proc = _spawn(cmd)
    while proc.poll() is None and _logged(run) == 0:
        time.sleep(0.005)
    t0 = time.perf_counter()
    assert proc.wait(timeout=300) == 0
    return time.perf_counter() - t0


def _best_never_lags(run: Path, outcomes: list[str]) -> None:
    """best.pt is written before last.pt: whatever a kill interrupted, best.pt holds the epoch last.pt calls
    best, or a later one (a kill between the two writes)."""
    if not (run / "last.pt").exists():
        return
    best = load_checkpoint(run / "last.pt").get("best")
    if best is not None:
        assert (run / "best.pt").exists(), outcomes
        assert load_checkpoint(run / "best.pt")["epoch"] >= best["epoch"], outcomes


def _kill_when(proc: subprocess.Popen, run: Path, deadline: float, at_write: bool) -> str:
    """SIGKILL ``proc`` at ``deadline`` or, with ``at_write``, as soon as a checkpoint's temporary file appears."""
    while proc.poll() is None:
        now = time.perf_counter()
        writing = at_write and (any(run.glob(".last.pt.*")) or any(run.glob(".best.pt.*")))
        if writing or (not at_write and now >= deadline):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return "while writing a checkpoint" if writing else f"at {now:.1f}s"
        time.sleep(0.002 if at_write else 0.01)
    return "after it finished"


@pytest.fixture(scope="module")
def reference(vcm4: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], float]:
    """The uninterrupted run's weights and the seconds it trains (from its first logged step to its end)."""
    run = tmp_path_factory.mktemp("kill") / "reference"
    seconds = _timed(_cmft("train", "--out", str(run), *_overrides(vcm4)), run)
    return load_checkpoint(run / "last.pt")["model"], seconds


def test_train_killed_anywhere_resumes_to_identical_weights(vcm4: Path, tmp_path: Path, reference) -> None:
    """KILLS real kills, each on a fresh or an already interrupted and resumed process, each after the process
    has logged a training step (every fifth while a checkpoint is being written); after each, best.pt never lags
    last.pt; every run then finishes and must equal the uninterrupted run bit for bit."""
    weights, seconds = reference
    rng = random.Random(0)
    outcomes: list[str] = []
    runs = 0

    def check(run: Path) -> None:
        got = load_checkpoint(run / "last.pt")
        assert got["epoch"] == EPOCHS - 1, outcomes
        assert not any(run.glob(".*.pt.*")), outcomes  # no temporary file left behind
        for name, tensor in weights.items():
            assert torch.equal(got["model"][name], tensor), (run.name, outcomes, name)
        assert load_checkpoint(run / "best.pt")["epoch"] == got["best"]["epoch"], outcomes
        shutil.rmtree(run)  # ~400 MB of checkpoints a run

    run = tmp_path / "run0"
    for attempt in range(4 * KILLS):
        kills = sum(o != "after it finished" for o in outcomes)
        if kills >= KILLS:
            break
        at_write = kills % 5 == 4
        where = ["--resume", str(run)] if (run / "last.pt").exists() else ["--out", str(run)]
        before = _logged(run)
        proc = _spawn(_cmft("train", *where, *_overrides(vcm4)))
        outcomes.append(_kill_in_training(proc, run, before, rng.uniform(0, seconds), at_write))
        _best_never_lags(run, outcomes)
        if outcomes[-1] == "after it finished":  # the run completed: check it, start the next one
            check(run)
            runs += 1
            run = tmp_path / f"run{runs}"
    _finish(run, vcm4)
    check(run)
    assert sum(o != "after it finished" for o in outcomes) >= KILLS, outcomes
    assert sum(o == "while writing a checkpoint" for o in outcomes) >= 1, outcomes


def test_regdb_trials_killed_anywhere_keeps_finished_trials(tmp_path: Path) -> None:
    """`cmft regdb-trials` SIGKILLed KILLS times at random moments of its training (a kill may hit a re-run): finished trials are
    kept, the interrupted one resumes, and the final summary and every trial's weights equal an uninterrupted run."""
    import json

    from test_image_datasets_cli import TINY, write_regdb

    root = write_regdb(tmp_path / "regdb")
    tiny = [*[o for o in TINY if not o.startswith("train.epochs")], "train.epochs=2", "train.eval_every=0", "train.log_every=1",
            "train.deterministic=true"]

    def cmd(out: Path) -> list[str]:
        return _cmft("regdb-trials", "--data", str(root), "--out", str(out), "--trials", "1-2", "--workers", "0", *tiny)

    ref = tmp_path / "reference"
    seconds = _timed(cmd(ref), ref)
    want = json.loads((ref / "summary.json").read_text())
    weights = {t: load_checkpoint(ref / f"trial{t}" / "last.pt")["model"] for t in (1, 2)}

    def check(out: Path) -> None:
        assert json.loads((out / "summary.json").read_text())["per_trial"] == want["per_trial"]
        for t in (1, 2):
            got = load_checkpoint(out / f"trial{t}" / "last.pt")["model"]
            assert all(torch.equal(got[k], v) for k, v in weights[t].items()), t
        shutil.rmtree(out)

    rng = random.Random(1)
    outcomes: list[str] = []
    runs, out = 0, tmp_path / "run0"
    for attempt in range(4 * KILLS):
        if sum(o != "after it finished" for o in outcomes) >= KILLS:
            break
        before = _logged(out)
        outcomes.append(_kill_in_training(_spawn(cmd(out)), out, before, rng.uniform(0, seconds), False))
        if outcomes[-1] == "after it finished":
            check(out)
            runs += 1
            out = tmp_path / f"run{runs}"
    proc = subprocess.run(cmd(out), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check(out)
    assert sum(o != "after it finished" for o in outcomes) >= KILLS, outcomes


def test_track_append_killed_anywhere_is_old_or_new_and_reruns_without_duplicates(tmp_path: Path) -> None:
    """`cmft track --out DIR` appending a third camera to an existing dataset, SIGKILLed KILLS times at random
    moments (every fifth while the commit is staged): after each kill `cmft info` reads either the old or the new
    dataset, never a mix, and a re-run of the same append adds nothing twice."""
    from conftest import BODY, PETS
    from test_tracking import need_data

    from cmft.data import dataset_summary
    from cmft.data.datasets.registry import load_dataset

    need_data()
    base = ["track", str(PETS / "vtest.avi"), "--detector", BODY, "--limit", "80", "--min-len", "8"]
    initial = [("1", "rgb"), ("2", "ir")]
    append = ["--camera", "3", "--modality", "rgb"]

    def run(out: Path, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(_cmft(*base, *args, "--out", str(out)), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    def counts(out: Path) -> tuple[int, int]:  # what `cmft info --json` reports, read in this process
        summary = dataset_summary(load_dataset("auto", out))
        return summary["gallery"]["rgb_tracklets"], summary["query"]["ir_tracklets"]

    def fresh(out: Path) -> None:
        shutil.rmtree(out, ignore_errors=True)
        for cam, mod in initial:
            run(out, "--camera", cam, "--modality", mod)

    out = tmp_path / "ds"
    fresh(out)
    old = counts(out)
    t0 = time.perf_counter()
    run(out, *append)
    seconds = time.perf_counter() - t0
    new = counts(out)
    assert new[0] > old[0] and new[1] == old[1]

    rng = random.Random(2)
    outcomes: list[str] = []
    fresh(out)
    for attempt in range(4 * KILLS):
        if sum(o != "after it finished" for o in outcomes) >= KILLS:
            break
        proc = subprocess.Popen(_cmft(*base, *append, "--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if len(outcomes) % 5 == 4:  # wait for the staged commit, then kill
            while proc.poll() is None and not (out / "info" / ".pending").exists():
                time.sleep(0.001)
            killed = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            outcomes.append("while committing" if killed else "after it finished")
        else:
            outcomes.append(_kill_when(proc, out, time.perf_counter() + rng.uniform(0.5, seconds), False))
        now = counts(out)
        assert now in (old, new), (outcomes, now)  # never a mix, never an unreadable dataset
        if now == new:  # the append landed: the same append again adds nothing; start over
            again = run(out, *append)
            assert "already in" in again.stdout and counts(out) == new
            fresh(out)
    run(out, *append)  # the interrupted append, finished
    assert counts(out) == new
    assert sum(o != "after it finished" for o in outcomes) >= KILLS, outcomes


INDEX_KILLS = int(os.environ.get("CMFT_INDEX_KILLS", "10"))  # 50 in the release check: CMFT_INDEX_KILLS=50 (about 25 min on 2 cores)


def test_index_killed_anywhere_opens_old_or_new_and_reruns_without_duplicates(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """`cmft index` of 44 tracklets, 3 per transaction (every other run ending in a compaction), SIGKILLed at
    INDEX_KILLS seeded random moments of initial builds and of re-runs that add to a partly built store: after
    each kill the store opens, holds a prefix of whole batches (every entry with the embedding and thumbnail of
    an uninterrupted run, no key twice, nothing that was there before lost), and re-running completes it."""
    import numpy as np

    from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic
    from cmft.search.store import is_store, open_store

    synth = tmp_path / "synth"
    generate_synthetic(synth, SynthConfig(ids=6, train_ids=2, height=32, width=16, max_frames=14, workers=1))

    def cmd(store: Path, compact: bool) -> list[str]:
        return _cmft("index", str(synth), "--store", str(store), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                     "--commit-every", "3", "--compact" if compact else "--no-compact")

    t0 = time.perf_counter()
    ref_dir = tmp_path / "reference"
    proc = subprocess.Popen(cmd(ref_dir, True), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not is_store(ref_dir):
        time.sleep(0.005)
    startup = time.perf_counter() - t0
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    seconds = time.perf_counter() - t0
    with open_store(ref_dir, readonly=True) as ref:
        want = {e["key"]: ref.embedding(e["id"]) for e in ref.entries()}
    assert len(want) == 44

    def state(store: Path) -> dict[str, np.ndarray]:
        if not is_store(store):  # killed before the store's first commit: nothing, no error
            return {}
        with open_store(store, readonly=True) as st:
            entries = st.entries()
            keys = [e["key"] for e in entries]
            assert len(keys) == len(set(keys)) and set(keys) <= set(want), outcomes
            assert len(keys) % 3 == 0 or len(keys) == 44, (len(keys), outcomes)  # whole transactions only
            for e in entries:
                assert np.allclose(st.embedding(e["id"]), want[e["key"]], atol=1e-6), outcomes
                assert (store / e["thumbnail"]).is_file(), outcomes
            return {k: st.embedding(e["id"]) for k, e in zip(keys, entries)}

    rng = random.Random(3)
    outcomes: list[str] = []
    store = tmp_path / "store"
    before: dict[str, np.ndarray] = {}
    runs = 0
    for attempt in range(4 * INDEX_KILLS):
        if sum(o != "after it finished" for o in outcomes) >= INDEX_KILLS:
            break
        proc = subprocess.Popen(cmd(store, runs % 2 == 1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs += 1
        # the imports and the model load take most of a run: aim the kills at what is left of the indexing
        left = (seconds - startup) * (1 - len(before) / len(want))
        outcomes.append(_kill_when(proc, store, time.perf_counter() + 0.9 * startup + rng.uniform(0, left + 0.2 * startup), False))
        now = state(store)
        assert set(before) <= set(now), outcomes  # nothing committed is ever lost
        before = now
        if len(now) == 44:  # complete: the same command adds nothing; then start a new initial build
            again = subprocess.run(cmd(store, False), capture_output=True, text=True, timeout=300)
            assert again.returncode == 0 and "0 new" in again.stdout, again.stdout[-2000:]
            assert len(state(store)) == 44
            shutil.rmtree(store)
            before = {}
    done = subprocess.run(cmd(store, True), capture_output=True, text=True, timeout=300)  # the interrupted one, finished
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(state(store)) == set(want)
    assert sum(o != "after it finished" for o in outcomes) >= INDEX_KILLS, outcomes


OPTIMIZE_KILLS = int(os.environ.get("CMFT_OPTIMIZE_KILLS", "10"))  # 20 in the release check: CMFT_OPTIMIZE_KILLS=20
_OPTIMIZER = """
import sys
import numpy as np
import cmft.search.store as store_mod
from cmft.search.store import GalleryStore

store_mod.IVF_MIN_ROWS = 400  # train the vector index at this small size, so kills land in its training too
DIM = 32

def vec(i):
    x = np.random.default_rng(i).normal(size=DIM).astype(np.float32)
    return x / np.linalg.norm(x)

def entry(i):
    return {"key": f"k{i}", "camera": i % 7 + 1, "modality": "rgb" if i % 2 else "ir", "pid": i // 3, "time": None,
            "source": "s", "frames": ["f.jpg"], "thumbnail": None}

st = GalleryStore.create(sys.argv[1], DIM, "ivf", exist_ok=True)
step = int(sys.argv[2])
while True:
    new = [i for i in range(step * 100, step * 100 + 100)]
    st.add(np.stack([vec(i) for i in new]), [entry(i) for i in new], skip_existing=True)
    print(f"added {step}", flush=True)
    gone = [f"k{i}" for i in range(step * 100, step * 100 + 100, 4)]
    st.delete(keys=gone)
    print(f"deleted {step}", flush=True)
    st.compact()
    print(f"optimized {step}", flush=True)
    step += 1
"""


def test_optimize_killed_anywhere_keeps_every_commit(tmp_path: Path) -> None:
    """A process adding, deleting and optimizing (fragments merged, deleted rows dropped, the IVF-PQ and scalar
    indexes (re)built) SIGKILLed at OPTIMIZE_KILLS random moments: after each kill the store opens, every add and
    delete the process reported as committed holds, no key is there twice, every vector is the one added, and
    exact and approximate search agree."""
    import numpy as np

    from cmft.search.gallery import key_id
    from cmft.search.store import GalleryStore, is_store

    def vec(i: int) -> np.ndarray:
        x = np.random.default_rng(i).normal(size=32).astype(np.float32)
        return x / np.linalg.norm(x)

    path = tmp_path / "g"
    rng = random.Random(5)
    added: set[int] = set()
    deleted: set[int] = set()
    step, kills, during_optimize = 0, 0, 0
    while kills < OPTIMIZE_KILLS:
        proc = subprocess.Popen([sys.executable, "-c", _OPTIMIZER, str(path), str(step)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        seen = ""
        if kills % 2 == 0:  # every other kill aimed at an optimize: just after a step's delete is reported
            while not seen.rstrip().endswith(tuple(f"deleted {n}" for n in range(step, step + 3))):
                line = proc.stdout.readline()
                if not line:
                    break
                seen += line
            time.sleep(rng.uniform(0.0, 0.8))
        else:
            time.sleep(rng.uniform(1.5, 5.0))
        proc.send_signal(signal.SIGKILL)
        out, errors = proc.communicate()
        out = seen + out
        assert proc.returncode == -signal.SIGKILL, errors[-2000:]
        kills += 1
        lines = out.split()
        for word, n in zip(lines[::2], lines[1::2]):
            if word == "added":
                added.update(range(int(n) * 100, int(n) * 100 + 100))
            elif word == "deleted":
                deleted.update(range(int(n) * 100, int(n) * 100 + 100, 4))
        during_optimize += bool(lines) and lines[-2] == "deleted"
        if lines:  # after its delete a step is done (optimize is re-run by the next one); else it starts again
            step = int(lines[-1]) + (lines[-2] != "added")
        in_flight = set(range(step * 100, step * 100 + 100, 4))  # its delete may have committed, unreported
        if not is_store(path):
            assert not added  # killed before the store's first commit
            continue
        st = GalleryStore(path, readonly=True)
        keys = [e["key"] for e in st.entries()]
        assert len(keys) == len(set(keys)) == len(st), "a key twice"
        have = {int(k[1:]) for k in keys}
        assert (added - deleted - in_flight) <= have, sorted((added - deleted - in_flight) - have)[:5]  # nothing committed is lost
        assert not (have & deleted), sorted(have & deleted)[:5]  # nothing deleted comes back
        assert have <= set(range(step * 100 + 100))
        for i in sorted(have)[::37]:
            assert np.array_equal(st.embedding(key_id(f"k{i}")), vec(i))
        q = np.stack([vec(10**6 + j) for j in range(5)])
        exact, approx = st.search(q, k=10, exact=True), st.search(q, k=10)
        recall = np.mean([len({i for i, _ in a} & {i for i, _ in e}) / len(e) for a, e in zip(approx, exact) if e])
        assert recall >= 0.9, recall
    assert during_optimize >= OPTIMIZE_KILLS // 4, during_optimize  # the kills did land while optimizing


INGEST_KILLS = int(os.environ.get("CMFT_INGEST_KILLS", "10"))
_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_YF = _DATA / "weights" / "yolo_fastest"


@pytest.mark.skipif(not (_DATA / "mot15" / "PETS09-S2L1" / "vtest.avi").is_file() or not _YF.is_dir(),
                    reason="PETS09-S2L1 or Yolo-Fastest not found in ../shared/data")
def test_ingest_killed_anywhere_reruns_to_the_uninterrupted_gallery(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """`cmft ingest` of five videos SIGKILLed (its whole process group, Ray's processes included) at INGEST_KILLS
    seeded random moments of its work, every third run on 2 Ray workers: after each kill the store opens and holds
    whole videos only (each video's tracklets all there, with the uninterrupted run's embeddings, or none), and
    running the command again ends with exactly the uninterrupted run's tracklets."""
    import numpy as np
    import yaml

    from cmft.search.store import is_store, open_store
    from cmft.tracking.video import write_segments

    clips = write_segments(_DATA / "mot15" / "PETS09-S2L1" / "vtest.avi", tmp_path / "clips", 40, count=5, start=200)
    manifest = tmp_path / "day.yaml"
    manifest.write_text(yaml.safe_dump([{"path": str(c), "camera": i + 1, "modality": "ir" if i % 2 else "rgb",
                                         "start": f"2026-12-01T0{i}:00:00Z"} for i, c in enumerate(clips)]))
    body = f"darknet:{_YF / 'yolo-fastest-1.1_body.cfg'}:{_YF / 'yolo-fastest-1.1_body.weights'}"

    def cmd(store: Path, workers: int) -> list[str]:
        return _cmft("ingest", str(manifest), "--checkpoint", str(tiny_checkpoint), "--store", str(store),
                     "--detector", body, "--device", "cpu", "--workers", str(workers))

    def contents(store: Path) -> dict[str, tuple]:
        """{key below the crops folder: (video, captured, camera, modality, embedding)}, checked for duplicates."""
        if not is_store(store):
            return {}
        with open_store(store, readonly=True) as s:
            entries = s.entries()
            keys = [e["key"] for e in entries]
            assert len(keys) == len(set(keys)), outcomes
            return {str(Path(e["key"]).relative_to(store / "crops")): (e["video"], e["captured"], e["camera"], e["modality"],
                                                                        s.embedding(e["id"])) for e in entries}

    def same(got: dict[str, tuple], keys: set[str] | None = None) -> None:
        assert set(got) == (set(want) if keys is None else keys), outcomes
        for k, v in got.items():
            assert v[:4] == want[k][:4], (k, outcomes)
            assert np.allclose(v[4], want[k][4], atol=1e-6), (k, outcomes)

    outcomes: list[str] = []
    ref = tmp_path / "reference"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd(ref, 0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not (ref / "crops").is_dir():  # the first video's crops: the work has begun
        time.sleep(0.005)
    startup = time.perf_counter() - t0
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]
    seconds = time.perf_counter() - t0
    want = contents(ref)
    videos = {v[0] for v in want.values()}
    per_video = (seconds - startup) / len(clips)
    assert len(videos) >= 3, want.keys()  # most videos give tracklets (one may give none: the ledger covers it)
    keys_of = {v: {k for k, x in want.items() if x[0] == v} for v in videos}

    rng = random.Random(4)
    store, runs, partial = tmp_path / "store0", 0, 0
    for attempt in range(4 * INGEST_KILLS):
        if sum(not o.startswith("after it finished") for o in outcomes) >= INGEST_KILLS:
            break
        workers = 2 if attempt % 3 == 2 else 0
        # a seeded moment of the work: after a random number of this run's video commits (the ledger's lines),
        # then a random part of one video's time; with no commit to wait for, after the start-up
        ledger = store / "crops" / "ingested.jsonl"
        committed = len(ledger.read_text().splitlines()) if ledger.is_file() else 0
        target = committed + rng.randrange(0, len(clips) - committed) if committed < len(clips) else committed  # a line a video
        proc = subprocess.Popen(cmd(store, workers), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        spawned = time.perf_counter()
        while proc.poll() is None and (len(ledger.read_text().splitlines()) if ledger.is_file() else 0) < target:
            time.sleep(0.005)
        if target == committed:  # after the start-up (Ray's too), within this run's first videos
            delay = 0.9 * startup + (6.0 if workers else 0.0) + rng.uniform(0, 3 * per_video)
        else:  # within the video after the target-th commit
            delay = rng.uniform(0, per_video)
        deadline = time.perf_counter() + delay
        while proc.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            outcomes.append(f"after {target - committed} commits + {delay:.1f}s ({time.perf_counter() - spawned:.1f}s in), "
                            f"{workers} Ray workers")
        else:
            outcomes.append("after it finished")
        got = contents(store)
        same(got, set(got))  # every entry is the uninterrupted run's
        for v, keys in keys_of.items():  # whole videos only
            assert not (set(got) & keys) or keys <= set(got), (v, outcomes)
        outcomes[-1] += f" ({len(got)} of {len(want)} tracklets)"
        if 0 < len(got) < len(want):
            partial += 1
        if outcomes[-1].startswith("after it finished") or len(got) == len(want):  # this chain is complete
            same(got)
            runs += 1
            store = tmp_path / f"store{runs}"
    proc = subprocess.run(cmd(store, 0), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    same(contents(store))
    again = subprocess.run([*cmd(store, 0), "--json"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads(again.stdout)["tracklets"] == 0, again.stderr[-2000:]
    assert sum(not o.startswith("after it finished") for o in outcomes) >= INGEST_KILLS, outcomes
    assert partial >= 2, outcomes  # kills landed between videos' commits, not only before the first or after the last
    print(f"ingest kills: {outcomes}; {partial} left some videos committed and others not")
