"""Property-based fuzzing (Hypothesis): mutated and random inputs to every dataset reader, the config loader and
overrides, and detector specs either work or raise the documented error type with a message that names the file
or the field; never another exception, never a hang. Example counts are bounded for CI; set
``CMFT_FUZZ_EXAMPLES`` for a longer run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_TEST, TINY_TRAIN, write_vcm_tree
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cmft.config import RANGES, Config, ConfigError, load_config
from cmft.data.datasets.registry import load_dataset
from cmft.data.errors import DatasetFormatError

EXAMPLES = int(os.environ.get("CMFT_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
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


def _fingerprint(ds: Any, root: Path) -> tuple:
    """Everything a reader returns, in comparable form (frame paths relative to the root)."""
    def tracks(ts: list) -> tuple:
        return tuple((tuple(os.path.relpath(p, root) for p in t.paths), t.pid, t.camid, t.modality) for t in ts)

    return (tracks(ds.train), tracks(ds.test_ir), tracks(ds.test_rgb), tracks(ds.auxiliary), ds.num_query,
            tuple(ds.pairs), sorted(ds.train_pid_map.items()),
            sorted((k, tuple((tracks([a]), tracks([b])) for a, b in v)) for k, v in ds.test_pairs.items()))


def _contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# options that make every target file count (BUPTCampus reads train_auxiliary.txt only when asked)
READ_OPTIONS = {"buptcampus": {"auxiliary": True}}


def _read(dataset: str, root: Path) -> tuple | str:
    """The dataset's fingerprint, or the message of the clear error it raised."""
    try:
        return _fingerprint(load_dataset("auto", root, **READ_OPTIONS.get(dataset, {})), root)
    except (DatasetFormatError, ValueError) as e:
        return str(e)


def _records(data: bytes) -> list[int]:
    """Indices of the non-blank lines of a file (records; a JSON file's lines are records too)."""
    return [i for i, line in enumerate(data.split(b"\n")) if line.strip()]


def _dropped_anyway(dataset: str, which: str, line: str) -> bool:
    """Whether the reader drops this record by its own rule, so that deleting it may change nothing: a HITSZ-VCM
    tracklet of fewer than MIN_SEQ_LEN frames (a row ``modality start end pid cam``)."""
    from cmft.data.datasets.hitsz_vcm import MIN_SEQ_LEN

    fields = line.split()
    return (dataset == "hitsz_vcm" and which.startswith("info/track_") and len(fields) == 5
            and int(fields[2]) - int(fields[1]) + 1 < MIN_SEQ_LEN)


def _neutral(data: bytes, how: str) -> bytes:
    """An edit that changes no record: a blank line at the end, Windows line ends, trailing spaces."""
    if how == "blank line":
        return data + (b"" if data.endswith(b"\n") else b"\n") + b"\n"
    if how == "crlf":
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return b"\n".join(line + b"  " if line.strip() else line for line in data.split(b"\n"))


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
    """Edits of the files a user touches by hand, each of a kind whose meaning is known:

    * random edits (replaced spans, raw bytes, truncation, deleted or doubled lines): the dataset reads, or
      raises DatasetFormatError / ValueError naming the edited file;
    * a record line deleted: the dataset reads differently (the record is gone), or the error names the file;
    * neutral edits (a blank line at the end, Windows line ends, trailing spaces): the same dataset as before.

    Edits that leave the file as it was are not counted; the tree is compared by content: a reader writes
    nothing. Every kind of edit, and both outcomes of the random ones, are reached at least 3 times."""
    want = _read(dataset, pristine[dataset])
    assert isinstance(want, tuple), want
    layers = Layers(f"{dataset} mutations", ["named error", "read after an edit", "record deleted", "neutral: same read"])

    def check(which: str, kind: str, edits: list, pick: int, how: str) -> None:
        root = tmp_path_factory.mktemp(dataset) / "root"
        shutil.copytree(pristine[dataset], root)
        path = root / which
        before = path.read_bytes()
        gone = ""
        if kind == "random":
            mutate(path, edits)
        elif kind == "delete":
            records = _records(before)
            lines = before.split(b"\n")
            gone = lines.pop(records[pick % len(records)]).decode()
            path.write_bytes(b"\n".join(lines))
        else:
            path.write_bytes(_neutral(before, how))
        assume(path.read_bytes() != before)  # an edit that changed nothing says nothing
        tree = _contents(root)
        got = _read(dataset, root)
        assert _contents(root) == tree  # a reader writes nothing, and changes nothing
        if isinstance(got, str):
            assert Path(which).name in got, f"{which} ({kind}): {got}"  # the edited file is named
        if kind == "neutral":
            assert got == want, f"{which} ({how}) read differently: {got if isinstance(got, str) else 'other tracklets'}"
            layers.hit("neutral: same read")
        else:
            if kind == "delete":
                assert got != want or _dropped_anyway(dataset, which, gone), f"{which}: deleting {gone!r} changed nothing"
                layers.hit("record deleted")
            layers.hit("named error" if isinstance(got, str) else "read after an edit")

    def run(kind: str) -> None:  # one run per kind, so that each gets its share of examples
        @FUZZ
        @given(which=st.sampled_from(TARGETS[dataset]), edits=st.lists(EDIT, min_size=1, max_size=4),
               pick=st.integers(0, 10_000), how=st.sampled_from(["blank line", "crlf", "trailing spaces"]))
        def one(which: str, edits: list, pick: int, how: str) -> None:
            check(which, kind, edits, pick, how)

        one()

    for kind in ("random", "delete", "neutral"):
        run(kind)
    layers.check()


class Layers:
    """Counts of the layer each fuzz example stopped at (or "accepted"); the test prints them and asserts that
    every layer was reached at least ``least`` times, so a fuzzer that only ever hits its first check fails."""

    def __init__(self, name: str, layers: list[str]) -> None:
        self.name, self.counts = name, dict.fromkeys(layers, 0)

    def hit(self, layer: str) -> None:
        assert layer in self.counts, layer
        self.counts[layer] += 1

    def check(self, least: int = 3) -> None:
        print(f"{self.name}: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        thin = {k: v for k, v in self.counts.items() if v < least}
        assert not thin, f"{self.name}: layers reached fewer than {least} times: {thin} (all: {self.counts})"


CHEAP = settings(FUZZ, max_examples=4 * EXAMPLES)  # config checks take microseconds: more examples per layer


def _fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every dotted config key and its type."""
    import dataclasses
    import typing

    out: dict[str, Any] = {}
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            out |= _fields(tp, f"{prefix}{name}.")
        else:
            out[f"{prefix}{name}"] = tp
    return out


KEYS = _fields(Config)
# YAML values of every kind: most keys get a value of another type, or one out of range, or a fitting one
SCALAR = st.one_of(
    st.integers(-10**6, 10**6), st.sampled_from([0, 1, -1, 2**63]), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.1]), st.booleans(), st.none(),
    st.sampled_from(["auto", "sgd", "cosine", "lcross", "fp32", "bn", "all", "resnet18"]),
    st.text(st.characters(codec="ascii", categories=("L", "N")), max_size=8),
)
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(st.sampled_from(["a", "lr", "start"]), SCALAR, max_size=2))
# numbers for the keys that have a range: about half of them outside it
RANGED = st.tuples(st.sampled_from(sorted(RANGES)), st.one_of(st.integers(-3, 0), st.floats(-1.5, 1.5)))
TYPO = st.sampled_from(["optim.lrate", "train.epoch", "data.nope", "model.args.fuson", "optimizer.lr", "loss.cross.x", "x"])


def _yaml(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _config_layer(message: str | None) -> str:
    """Which check stopped a config (``None``: it loaded)."""
    if message is None:
        return "accepted"
    if "expected section.key=value" in message or "not valid YAML" in message:
        return "syntax"
    if "expected a mapping of sections" in message:
        return "not a mapping"
    if "unknown key" in message or "unknown section" in message or "is not a section" in message:
        return "unknown key"
    if "expected " in message:
        return "type"
    if "must be" in message:
        return "value"
    raise AssertionError(f"a config error of no known layer: {message}")


def test_config_overrides() -> None:
    """Well-formed ``section.key=value`` overrides of real keys with values of every type (and some malformed or
    unknown ones) build a config or raise ConfigError naming the key; every layer (syntax, unknown key, type,
    value range, accepted) is reached."""
    layers = Layers("overrides", ["syntax", "unknown key", "type", "value", "accepted"])

    @CHEAP
    @given(item=st.one_of(
        st.tuples(st.sampled_from(sorted(KEYS)), VALUE).map(lambda kv: f"{kv[0]}={_yaml(kv[1])}"),
        st.tuples(st.sampled_from(sorted(KEYS)), VALUE).map(lambda kv: f"{kv[0]}={_yaml(kv[1])}"),
        RANGED.map(lambda kv: f"{kv[0]}={_yaml(kv[1])}"),
        st.tuples(TYPO, SCALAR).map(lambda kv: f"{kv[0]}={_yaml(kv[1])}"),
        st.text(st.characters(codec="ascii"), max_size=20),
    ))
    def check(item: str) -> None:
        try:
            load_config(None, [item])
            message = None
        except ConfigError as e:
            message = str(e)
        layer = _config_layer(message)
        layers.hit(layer)
        if layer in ("type", "value"):  # the key, or the section it wrongly goes below (loss.cross.x -> loss.cross)
            parts = item.partition("=")[0].split(".")
            assert any(".".join(parts[:n]) in message for n in range(2, len(parts) + 1)), message

    check()
    layers.check()


def test_config_files(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Config files: valid YAML mappings of real and mistyped sections and keys with values of every type, plus
    invalid YAML and other documents. Each loads or raises ConfigError naming the file; every layer is reached."""
    layers = Layers("config files", ["syntax", "not a mapping", "unknown key", "type", "value", "accepted"])
    section_keys = st.sampled_from(sorted(KEYS)).flatmap(lambda k: st.tuples(st.just(k), VALUE))

    def nest(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            node = out
            *parents, last = key.split(".")
            for p in parents:
                node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
            node[last] = value
        return out

    import yaml

    @CHEAP
    @given(text=st.one_of(
        st.lists(section_keys, min_size=1, max_size=3).map(lambda kv: yaml.safe_dump(nest(kv))),
        st.lists(section_keys, min_size=1, max_size=3).map(lambda kv: yaml.safe_dump(nest(kv))),
        st.lists(RANGED, min_size=1, max_size=2).map(lambda kv: yaml.safe_dump(nest(kv))),
        st.lists(RANGED, min_size=1, max_size=2).map(lambda kv: yaml.safe_dump(nest(kv))),
        st.lists(st.tuples(TYPO, SCALAR), min_size=1, max_size=2).map(lambda kv: yaml.safe_dump(nest(kv))),
        VALUE.map(yaml.safe_dump),
        st.text(max_size=120),
        st.sampled_from(["data: [1, 2\n", "a: b: c\n", "optim:\n\tlr: 1\n", "{", "- a\nb: c\n", "train: 'open\n",
                         "optim: {lr: 0.1\n", "? [\n", "data:\n  root: x\n   height: 3\n"]),
    ))
    def check(text: str) -> None:
        path = tmp_path_factory.mktemp("cfg") / "c.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
            message = None
        except ConfigError as e:
            message = str(e)
            assert "c.yaml" in message, message
        layers.hit(_config_layer(message))

    check()
    layers.check()


def test_detector_specs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Specs of every real kind with missing, empty, garbage, truncated and real files, and options in and out of
    range: each builds a working detector or raises DetectorError (naming the file when the file is at fault).
    Every layer (spec syntax, options, files, built) is reached."""
    import numpy as np
    from conftest import DATA

    from cmft.tracking.detectors import (
        DetectorError,
        build_detector,
        parse_detector_spec,
    )

    yf, nd = DATA / "weights" / "yolo_fastest", DATA / "weights" / "nanodet_hpc203"
    real = {"cfg": yf / "yolo-fastest-1.1_body.cfg", "weights": yf / "yolo-fastest-1.1_body.weights",
            "onnx": nd / "nanodet_m.onnx"}
    if not all(p.is_file() for p in real.values()):
        pytest.skip(f"detector weights not found under {DATA}")
    tmp = tmp_path_factory.mktemp("specs")
    rng = np.random.default_rng(0)
    files = {"missing": str(tmp / "absent.bin"), "folder": str(tmp), "empty": tmp / "empty.bin",
             "garbage": tmp / "garbage.bin"}
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    for kind, path in real.items():
        cut = tmp / f"truncated.{kind}"
        cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        files[f"truncated {kind}"], files[f"real {kind}"] = str(cut), str(path)
    files = {k: str(v) for k, v in files.items()}
    generic = ["missing", "folder", "empty", "garbage"]

    def args_of(kind: str) -> st.SearchStrategy:
        pick = lambda own: st.sampled_from(generic + [f"truncated {own}", f"real {own}", f"real {own}", f"real {own}"])
        return {"darknet": st.tuples(pick("cfg"), pick("weights")), "onnx": st.tuples(pick("onnx")),
                "yolo": st.tuples(st.sampled_from(generic)), "hog": st.just(())}[kind]

    of_a_kind = st.sampled_from(["darknet", "onnx", "yolo", "hog", "hog", "hog"]).flatmap(
        lambda kind: args_of(kind).map(lambda a: ":".join([kind, *(files[x] for x in a)])))
    junk = st.one_of(st.text(max_size=30), st.sampled_from(["darknet:a.cfg", "onnx", "hog:x", "onnx::", "yolo:", "HOG :", ""]))
    spec = st.one_of(of_a_kind, of_a_kind, of_a_kind, junk)
    options = st.fixed_dictionaries({  # each option out of range about one time in six
        "conf": st.one_of(*[st.floats(0, 1)] * 5, st.sampled_from([-0.1, 1.5])),
        "nms": st.one_of(*[st.floats(0.05, 1)] * 5, st.sampled_from([0.0, 1.2])),
        "input_size": st.sampled_from([None, None, None, None, 64, 96, 31, 0, -32]),
        "device": st.sampled_from(["cpu"] * 5 + ["cuda"]),
    })
    layers = Layers("detector specs", ["spec", "options", "files", "built"])
    frame = rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)

    def options_ok(kind: str, o: dict) -> bool:
        size = o["input_size"]
        return (0 <= o["conf"] <= 1 and 0 < o["nms"] <= 1 and (size is None or size > 0)
                and not (kind in ("darknet", "onnx") and size is not None and size % 32)
                and (kind == "yolo" or o["device"] == "cpu"))

    working = st.tuples(  # real files and options in range: about one case in four should build
        st.sampled_from(["hog", f"darknet:{files['real cfg']}:{files['real weights']}", f"onnx:{files['real onnx']}"]),
        st.fixed_dictionaries({"conf": st.floats(0, 1), "nms": st.floats(0.05, 1), "input_size": st.sampled_from([None, 64, 96]),
                               "device": st.just("cpu")}))

    in_range = st.fixed_dictionaries({"conf": st.floats(0, 1), "nms": st.floats(0.05, 1), "input_size": st.just(None),
                                      "device": st.just("cpu")})
    out_of_range = in_range.flatmap(lambda o: st.sampled_from([{**o, "conf": -0.1}, {**o, "conf": 1.5}, {**o, "nms": 0.0},
                                                               {**o, "input_size": -32}, {**o, "input_size": 0}]))
    # one run per layer aimed at (the answer decides which layer is counted), then mixed cases
    aims = [st.tuples(junk, options), st.tuples(of_a_kind, out_of_range), st.tuples(of_a_kind, in_range), working,
            st.tuples(spec, options)]

    def check(case: tuple[str, dict]) -> None:
        spec, o = case
        try:
            kind, parts = parse_detector_spec(spec)
        except DetectorError:
            kind = None
        try:
            detector = build_detector(spec, **o)
        except DetectorError as e:
            message = str(e)
            assert message
            if kind is None:
                layers.hit("spec")
            elif not options_ok(kind, o):
                layers.hit("options")
            else:
                layers.hit("files")
                assert any(p in message for p in parts), message  # the file at fault is named
            return
        assert kind is not None and options_ok(kind, o), (spec, o)
        boxes = detector(frame)
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 5
        layers.hit("built")

    for aim in aims:
        settings(FUZZ, max_examples=max(EXAMPLES // 2, 6))(given(case=aim)(check))()
    layers.check()
