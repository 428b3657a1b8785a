"""No code from a store: forests are plain arrays, pickles are refused, bytes match their hash.

A project store received from someone else must not run code when its model is loaded. The
planted payloads here create a marker file when unpickled; every test checks the marker is
absent after napari-hitl refused the model (and a control checks the payload does work).
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_hitl.cli import main
from napari_hitl.core.errors import StoreError
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.data import LabeledImage, Normalization
from napari_hitl.core.learning.forest import FOREST_FORMAT, ForestClassifier, forest_from_bytes
from napari_hitl.core.learning.net import NetClassifier, TrainConfig
from napari_hitl.core.learning.registry import (
    HASH_KEY,
    load_checkpoint,
    model_hash,
    save_checkpoint,
)
from napari_hitl.core.loop import (
    load_state,
    predict_project_image,
    push_project_image,
    train_project,
)
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import ProjectStore


class Payload:
    """Unpickling this writes ``marker``: the code a planted model would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _payload_bytes(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker), protocol=pickle.HIGHEST_PROTOCOL)


def _plant(store: ProjectStore, blob: bytes, config: dict, name: str = "latest") -> None:
    """Write ``blob`` + ``config`` as checkpoint ``name``, as a hostile or old store has it."""
    store._root.require_group("models").create_array(
        name,
        shape=(len(blob),),
        dtype=np.uint8,
        chunks=(max(1, len(blob)),),
        overwrite=True,
        attributes={"napari_hitl": {"config": config}},
    )[...] = np.frombuffer(blob, np.uint8)


def _config(store: ProjectStore, name: str = "latest") -> dict:
    return dict(dict(store._root["models"][name].attrs)["napari_hitl"]["config"])


def _norm(c: int) -> Normalization:
    return Normalization([f"b{i}" for i in range(c)], [0.0] * c, [1.0] * c)


def _one_line_store_error(excinfo: pytest.ExceptionInfo, *words: str) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    for word in words:
        assert word in text
    return text


@pytest.fixture
def fitted_forest(rng) -> tuple[ForestClassifier, np.ndarray]:
    x = rng.standard_normal((2, 70, 70)).astype(np.float32)
    target = np.full((70, 70), -1)
    target[5:15, 5:15] = 0
    target[40:50, 40:50] = 2
    target[20:30, 45:55] = 1
    clf = ForestClassifier(_norm(2), [1, 2, 3, 4], ["a", "b", "c", "d"], n_estimators=8)
    image = LabeledImage("a", x, target, (target >= 0).astype(np.float32))
    run_to_end(clf.fit([image], TrainConfig(holdout_fraction=0, threads=1)))
    return clf, x


@pytest.fixture
def rf_store(tmp_path) -> ProjectStore:
    """A 64² sample project with a trained forest as ``latest``."""
    store = build_sample_store(tmp_path / "p.zarr", shape=(64, 64))
    gt = store.read_derived("sample", "ground_truth")
    store.write_labels("sample", sparse_scribbles(gt, 0.05, seed=0))
    run_to_end(train_project(store, TrainConfig(model="rf", threads=1)))
    return store


@pytest.fixture
def net_store(tmp_path) -> ProjectStore:
    """A 64² sample project with an (untrained) U-Net saved as ``latest``."""
    store = build_sample_store(tmp_path / "n.zarr", shape=(64, 64))
    info = store.image_info("sample")
    norm = Normalization(info.band_names, [0.0] * len(info.band_names), [1.0] * len(info.bands))
    classes = store.classes
    clf = NetClassifier("unet", norm, [c.value for c in classes], [c.name for c in classes])
    save_checkpoint(store, "latest", clf, {"iteration": 1})
    return store


# ------------------------------------------------------------------------- the forest format
def test_forest_round_trip_predicts_identically(fitted_forest, rng):
    clf, x = fitted_forest
    blob, config = clf.state()
    assert blob.startswith(b"PK\x03\x04") and config["format"] == FOREST_FORMAT
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:  # plain arrays only
        assert all(npz[k].dtype.kind in "biuf" for k in npz.files)
    assert clf.state()[0] == blob  # deterministic: the model hash identifies the forest
    back = ForestClassifier.from_state(blob, json.loads(json.dumps(config)))
    feats = rng.standard_normal((4000, clf.forest.n_features_in_)).astype(np.float32)
    assert np.array_equal(clf.forest.predict_proba(feats), back.forest.predict_proba(feats))
    assert np.array_equal(clf.logits(x), back.logits(x))
    assert np.array_equal(back.forest.classes_, clf.forest.classes_)
    assert back.state()[0] == blob  # and saving it again gives the same bytes


def test_forest_checkpoint_in_a_store(rf_store):
    config = _config(rf_store)
    assert config["format"] == FOREST_FORMAT
    assert config[HASH_KEY] == config["model_hash"]  # the loop's hash is the bytes' hash
    state = load_state(rf_store)
    assert state is not None and state.classifier.kind == "rf"
    pred = run_to_end(predict_project_image(rf_store, "sample", state, write=False))
    again = run_to_end(predict_project_image(rf_store, "sample", load_state(rf_store)))
    assert np.array_equal(pred.probabilities, again.probabilities)


# ------------------------------------------------------------------------ planted pickles
def test_the_payload_runs_when_unpickled(tmp_path):
    """Control: the payload is live, so its marker's absence below means it never ran."""
    marker = tmp_path / "control"
    pickle.loads(_payload_bytes(marker))  # on purpose: the control
    assert marker.exists()


@pytest.mark.parametrize("disguise", ["old", "new-format-and-hash"])
def test_planted_forest_pickle_is_never_unpickled(rf_store, tmp_path, capsys, disguise):
    marker = tmp_path / "marker"
    payload = _payload_bytes(marker)
    config = _config(rf_store)
    config.pop(HASH_KEY)
    if disguise == "old":  # as napari-hitl ≤ this change wrote it: no format, no hash
        config.pop("format")
    else:  # a forger who adds the new marker and a matching hash
        config[HASH_KEY] = model_hash(payload)
    _plant(rf_store, payload, config)

    with pytest.raises(StoreError) as excinfo:
        load_checkpoint(rf_store, "latest")
    text = _one_line_store_error(
        excinfo, str(rf_store.path), "'latest'", "older napari-hitl", "can run code", "not loaded"
    )
    assert "napari-hitl train" in text and "--fresh --model rf" in text
    for job in (
        lambda: load_state(rf_store),
        lambda: run_to_end(predict_project_image(rf_store, "sample")),
        lambda: push_project_image(rf_store, "sample", 0.5),
        lambda: run_to_end(train_project(rf_store, TrainConfig(model="rf", threads=1))),
    ):
        with pytest.raises(StoreError, match="can run code"):
            job()
    assert not marker.exists()

    capsys.readouterr()
    for argv in (["predict", str(rf_store.path)], ["predict", str(rf_store.path), "--slice", "0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("napari-hitl predict: error:") and "\n" not in err
        assert "can run code" in err
    assert not marker.exists()

    # the command the message gives replaces the model
    assert main(["train", str(rf_store.path), "--fresh", "--model", "rf", "--threads", "1"]) == 0
    assert load_checkpoint(rf_store, "latest").kind == "rf"
    assert not marker.exists()


def test_planted_pickle_as_a_network_is_refused(net_store, tmp_path):
    marker = tmp_path / "marker"
    config = _config(net_store)
    config.pop(HASH_KEY)
    _plant(net_store, _payload_bytes(marker), config)
    with pytest.raises(StoreError) as excinfo:
        load_checkpoint(net_store, "latest")
    _one_line_store_error(excinfo, str(net_store.path), "'latest'", "napari-hitl train")
    # the same pickle inside a torch-style zip: torch's weights-only loader refuses it
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", _payload_bytes(marker))
        zf.writestr("archive/version", "3\n")
    _plant(net_store, buf.getvalue(), config)
    with pytest.raises(StoreError) as excinfo:
        load_checkpoint(net_store, "latest")
    _one_line_store_error(excinfo, "'latest'", "napari-hitl train")
    assert not marker.exists()


def test_object_arrays_in_a_forest_archive_are_refused(fitted_forest, tmp_path):
    clf, _ = fitted_forest
    blob, config = clf.state()
    marker = tmp_path / "marker"
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["classes"] = np.array([Payload(marker)], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # np.savez pickles object arrays
    with pytest.raises(StoreError) as excinfo:
        ForestClassifier.from_state(buf.getvalue(), config)
    _one_line_store_error(excinfo, "cannot be read")
    assert not marker.exists()


# ------------------------------------------------------------------------- damaged models
@pytest.mark.parametrize("store_fixture", ["rf_store", "net_store"])
def test_tampered_bytes_fail_the_hash_check(store_fixture, request, monkeypatch):
    store = request.getfixturevalue(store_fixture)
    arr = store._root["models"]["latest"]
    data = np.asarray(arr[...])
    data[len(data) // 2] ^= 0xFF
    arr[...] = data

    def never(*_):
        raise AssertionError("deserialized bytes that failed the hash check")

    import napari_hitl.core.learning.registry as learner

    monkeypatch.setattr(learner, "classifier_from_state", never)
    with pytest.raises(StoreError) as excinfo:
        load_checkpoint(store, "latest")
    _one_line_store_error(
        excinfo, str(store.path), "model 'latest' is damaged", "recorded hash", "napari-hitl train"
    )


def _wrong_shape_weights() -> bytes:
    other = NetClassifier("unet", _norm(3), [1, 2], ["a", "b"])  # 3 bands, 2 classes
    return other.state()[0]


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(lambda n: bytes(n), id="zeroed"),
        pytest.param(lambda n: b"garbage!" * (n // 8), id="garbage"),
        pytest.param(lambda n: b"PK\x03\x04" + bytes(n), id="zip-magic-then-zeros"),
        pytest.param(lambda n: _wrong_shape_weights(), id="wrong-shapes"),
    ],
)
def test_unreadable_network_is_one_line_error(net_store, capsys, blob):
    config = _config(net_store)
    config.pop(HASH_KEY)  # an older store: no hash, so the bytes reach torch's loader
    good = np.asarray(net_store._root["models"]["latest"][...]).tobytes()
    _plant(net_store, blob(len(good)), config)
    with pytest.raises(StoreError) as excinfo:
        load_checkpoint(net_store, "latest")
    text = _one_line_store_error(excinfo, str(net_store.path), "'latest'", "--fresh --model unet")
    assert len(text.replace(str(net_store.path), "")) < 300
    capsys.readouterr()
    assert main(["predict", str(net_store.path), "--slice", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-hitl predict: error:") and "\n" not in err


@pytest.mark.parametrize("store_fixture", ["rf_store", "net_store"])
def test_missing_config_key_is_one_line_error(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    config = _config(store)
    config.pop("normalization")
    _plant(store, np.asarray(store._root["models"]["latest"][...]).tobytes(), config)
    with pytest.raises(StoreError) as excinfo:
        load_checkpoint(store, "latest")
    _one_line_store_error(excinfo, "'latest'", "normalization")


def test_network_without_hash_still_loads(net_store):
    """Checkpoints written before hashes were recorded: networks load (weights only)."""
    config = _config(net_store)
    config.pop(HASH_KEY)
    _plant(net_store, np.asarray(net_store._root["models"]["latest"][...]).tobytes(), config)
    assert load_checkpoint(net_store, "latest").kind == "unet"


@pytest.mark.parametrize(
    "damage",
    ["zeroed", "child-out-of-range", "child-before-parent", "feature-out-of-range", "depth"],
)
def test_damaged_forest_is_refused(fitted_forest, damage):
    clf, _ = fitted_forest
    blob, config = clf.state()
    if damage == "zeroed":
        bad = bytes(len(blob))
    else:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k].copy() for k in npz.files}
        root_left = arrays["nodes.left_child"]
        if damage == "child-out-of-range":
            root_left[0] = 10**9
        elif damage == "child-before-parent":
            root_left[0] = 0
        elif damage == "feature-out-of-range":
            arrays["nodes.feature"][0] = clf.forest.n_features_in_
        else:
            arrays["max_depths"][0] += 1
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        bad = buf.getvalue()
        with pytest.raises(StoreError) as excinfo:
            forest_from_bytes(bad)
        _one_line_store_error(excinfo, "tree")
    with pytest.raises(StoreError) as excinfo:
        ForestClassifier.from_state(bad, config)
    assert "\n" not in str(excinfo.value)
