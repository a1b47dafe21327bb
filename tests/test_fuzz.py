"""Property-based fuzzing (Hypothesis): mutated and random inputs to every dataset reader, the config loader and
overrides, and detector specs either work or raise the documented error type with a message that names the file
or the field; never another exception, never a hang. Example counts are bounded for CI; set
``CMFT_FUZZ_EXAMPLES`` for a longer run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmft.config import ConfigError, load_config
from cmft.data.datasets.registry import load_dataset
from cmft.data.errors import DatasetFormatError

from conftest import TINY_TEST, TINY_TRAIN, write_vcm_tree

EXAMPLES = int(os.environ.get("CMFT_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# an edit of a text file: replace a span with random text, delete a line, duplicate a line, or truncate
EDIT = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.integers(0, 12),
              st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)),
    st.tuples(st.just("delete_line"), st.integers(0, 10_000), st.just(0), st.just("")),
    st.tuples(st.just("duplicate_line"), st.integers(0, 10_000), st.just(0), st.just("")),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0), st.just("")),
    st.tuples(st.just("bytes"), st.integers(0, 10_000), st.just(0), st.binary(min_size=1, max_size=6).map(lambda b: b.hex())),
)


def mutate(path: Path, edits: list[tuple[str, int, int, str]]) -> None:
    """Apply edits to a file (``bytes`` writes raw, possibly invalid UTF-8 bytes)."""
    data = path.read_bytes()
    for kind, pos, length, payload in edits:
        lines = data.split(b"\n")
        if kind == "replace":
            at = pos % (len(data) + 1)
            data = data[:at] + payload.encode() + data[at + length:]
        elif kind == "delete_line" and lines:
            del lines[pos % len(lines)]
            data = b"\n".join(lines)
        elif kind == "duplicate_line" and lines:
            i = pos % len(lines)
            data = b"\n".join(lines[: i + 1] + lines[i:])
        elif kind == "truncate":
            data = data[: pos % (len(data) + 1)]
        elif kind == "bytes":
            at = pos % (len(data) + 1)
            data = data[:at] + bytes.fromhex(payload) + data[at:]
    path.write_bytes(data)


def assert_reads_or_names(root: Path, files: list[Path], **options) -> None:
    """The reader works, or raises DatasetFormatError / ValueError whose message names a file, a field or the root."""
    try:
        load_dataset("auto", root, **options)
    except (DatasetFormatError, ValueError) as e:
        msg = str(e)
        assert msg and (any(f.name in msg for f in files) or str(root) in msg or "must be" in msg), msg


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from test_buptcampus import write_buptcampus
    from test_image_datasets_cli import write_regdb, write_sysu
    from test_llcm import write_llcm

    base = tmp_path_factory.mktemp("fuzz")
    return {
        "hitsz_vcm": write_vcm_tree(base / "vcm", TINY_TRAIN, TINY_TEST),
        "sysu_mm01": write_sysu(base / "sysu"),
        "regdb": write_regdb(base / "regdb"),
        "buptcampus": write_buptcampus(base / "bupt"),
        "llcm": write_llcm(base / "llcm"),
    }


# the files a user edits by hand or a broken download truncates, per dataset
TARGETS = {
    "hitsz_vcm": ["info/train_name.txt", "info/test_name.txt", "info/track_train_info.txt", "info/track_test_info.txt",
                  "info/query_IDX.txt"],
    "sysu_mm01": ["exp/train_id.txt", "exp/val_id.txt", "exp/test_id.txt"],
    "regdb": ["idx/train_visible_1.txt", "idx/train_thermal_1.txt", "idx/test_visible_1.txt", "idx/test_thermal_1.txt"],
    "buptcampus": ["train.txt", "query.txt", "gallery.txt", "train_auxiliary.txt", "data_paths.json"],
    "llcm": ["idx/train_vis.txt", "idx/train_nir.txt", "idx/test_id.txt"],
}


@pytest.mark.parametrize("dataset", sorted(TARGETS))
def test_mutated_dataset_files(dataset: str, pristine: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    @FUZZ
    @given(which=st.sampled_from(TARGETS[dataset]), edits=st.lists(EDIT, min_size=1, max_size=4))
    def check(which: str, edits: list) -> None:
        root = tmp_path_factory.mktemp(dataset) / "root"
        shutil.copytree(pristine[dataset], root)
        before = {p for p in root.rglob("*")}
        mutate(root / which, edits)
        assert_reads_or_names(root, [root / which])
        assert {p for p in root.rglob("*")} == before  # a reader writes nothing

    check()


@FUZZ
@given(key=st.text(st.characters(codec="ascii"), max_size=20), value=st.text(max_size=20))
def test_config_overrides(key: str, value: str) -> None:
    """``key=value`` overrides build a config or raise ConfigError naming the key."""
    try:
        load_config(None, [f"{key}={value}"])
    except ConfigError as e:
        assert str(e)


@FUZZ
@given(text=st.text(max_size=300))
def test_config_files(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A config file of random text loads or raises ConfigError naming the file."""
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as e:
        assert "c.yaml" in str(e), str(e)


@FUZZ
@given(spec=st.text(max_size=60))
def test_detector_specs(spec: str) -> None:
    """A detector spec builds a detector or raises DetectorError; no other exception."""
    from cmft.tracking.detectors import DetectorError, build_detector

    try:
        build_detector(spec)
    except DetectorError as e:
        assert str(e)
