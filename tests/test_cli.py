"""The command line: import variants, info, classes, export, and errors a user can act on."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import tifffile

from napari_hitl.cli import build_parser, main
from napari_hitl.core.learning.config import TrainConfig
from napari_hitl.core.store import ProjectStore


def test_help_lists_commands():
    text = build_parser().format_help()
    for cmd in ("import", "info", "export", "classes", "sample", "demo"):
        assert cmd in text
    out = subprocess.run(
        [sys.executable, "-m", "napari_hitl.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "import" in out.stdout


def test_stack_select_dsm_and_info(tmp_path, rng, capsys):
    files = []
    for name in ("red", "green", "blue", "nir"):
        p = tmp_path / f"{name}.tif"
        tifffile.imwrite(p, rng.integers(0, 60000, (32, 40)).astype(np.uint16))
        files.append(str(p))
    np.save(tmp_path / "dsm.npy", rng.random((32, 40)).astype(np.float32) * 30 + 100)
    store = tmp_path / "p.zarr"
    rc = main(
        [
            "import",
            str(store),
            *files,
            "--stack",
            "--name",
            "landsat",
            "--bands",
            "nir,red,green,blue",
            "--dsm",
            str(tmp_path / "dsm.npy"),
            "--classes",
            "cloud,clear",
        ]
    )
    assert rc == 0
    info = ProjectStore.open(store).image_info("landsat")
    assert info.band_names == ["nir", "red", "green", "blue", "DSM"]
    assert info.dsm_band == 4 and info.dtype == "<f4"  # uint16 + float32 DSM → float32
    assert [info.band_names[i] for i in info.rgb] == ["red", "green", "blue"]
    capsys.readouterr()
    assert main(["info", str(store), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"][0]["name"] == "cloud"
    assert summary["images"][0]["dsm_band"] == 4
    assert main(["info", str(store)]) == 0
    assert "height band DSM" in capsys.readouterr().out


def test_split_time_series_into_images(tmp_path, capsys):
    arr = np.random.default_rng(1).random((3, 10, 12, 13)).astype(np.float32)
    np.save(tmp_path / "scenes.npy", arr)
    store = tmp_path / "p.zarr"
    assert (
        main(["import", str(store), str(tmp_path / "scenes.npy"), "--axes", "TYXC", "--split", "T"])
        == 0
    )
    s = ProjectStore.open(store)
    assert s.image_names() == ["scenes_t0", "scenes_t1", "scenes_t2"]
    np.testing.assert_array_equal(s.image("scenes_t2")[...], np.moveaxis(arr[2], -1, 0))


def test_errors_are_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"garbage" * 20)
    assert main(["import", str(tmp_path / "p.zarr"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "broken.tif" in err and "not a readable TIFF" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "nope.zarr")]) == 2
    assert "not a napari-hitl project store" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "p.zarr"), "--out", "x.tif"]) == 2


def test_classes_and_export_all(tmp_path, rng, capsys):
    store = tmp_path / "p.zarr"
    np.save(tmp_path / "a.npy", rng.random((3, 16, 16)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.random((3, 16, 16)).astype(np.float32))
    assert main(["import", str(store), str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]) == 0
    assert main(["classes", str(store), "--set", "water:#0000ff,land"]) == 0
    out = capsys.readouterr().out
    assert "1\twater\t#0000ff" in out and "2\tland" in out
    assert (
        main(
            [
                "export",
                str(store),
                "--all",
                "--what",
                "labels",
                "provenance",
                "--out",
                str(tmp_path / "ex"),
                "--format",
                "png",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == [
        "a_labels.png",
        "a_provenance.png",
        "b_labels.png",
        "b_provenance.png",
    ]


def test_label_map_and_bad_spec(tmp_path, rng, capsys):
    np.save(tmp_path / "img.npy", rng.random((2, 8, 8)).astype(np.float32))
    mask = np.zeros((8, 8), np.int16)
    mask[:4] = 255
    mask[0, 0] = -1
    np.save(tmp_path / "m.npy", mask)
    store = tmp_path / "p.zarr"
    rc = main(
        [
            "import",
            str(store),
            str(tmp_path / "img.npy"),
            "--labels",
            str(tmp_path / "m.npy"),
            "--label-map=-1:0,0:1,255:2",
        ]
    )
    assert rc == 0
    lab = ProjectStore.open(store).labels("img")
    assert lab[0, 0] == 0 and (lab[0, 1:] == 2).all() and (lab[4:] == 1).all()
    assert (
        main(
            [
                "import",
                str(store),
                str(tmp_path / "img.npy"),
                "--name",
                "x",
                "--labels",
                str(tmp_path / "m.npy"),
                "--label-map",
                "a:b",
            ]
        )
        == 2
    )
    assert "OLD:NEW" in capsys.readouterr().err
    rc = main(
        [
            "import",
            str(store),
            str(tmp_path / "img.npy"),
            "--name",
            "y",
            "--labels",
            str(tmp_path / "m.npy"),
        ]
    )
    assert rc == 2  # -1 in a mask is refused, not silently imported


def test_help_and_version_load_no_torch():
    """``--help`` of every command answers without importing torch, zarr or scikit-image."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from napari_hitl.cli import build_parser, main\n"
        "cmds = [a.dest for a in build_parser()._subparsers._group_actions[0]._choices_actions]\n"
        "for argv in [['--help'], ['--version']] + [[c, '--help'] for c in cmds]:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(len(cmds), sorted(m for m in ('torch', 'zarr', 'skimage') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, loaded = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(n) >= 20 and loaded == "[]"


def _scribbled_sample(tmp_path) -> str:
    """A 96² sample project with 5 % of its pixels scribbled; returns its path."""
    from napari_hitl.core.evaluation.scribbles import sparse_scribbles

    path = str(tmp_path / "s.zarr")
    assert main(["sample", path, "--size", "96"]) == 0
    store = ProjectStore.open(path, "a")
    store.write_labels(
        "sample", sparse_scribbles(store.read_derived("sample", "ground_truth"), 0.05)
    )
    return path


def _json_runner(capsys, *extra: str):
    """``run(argv)``: the command with ``--json`` (and ``extra``), exit 0, its JSON object."""
    capsys.readouterr()

    def run(argv):
        assert main([*argv, *extra, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    return run


def test_loop_commands_print_one_json_object(tmp_path, capsys):
    """train, predict (in memory and block by block), push and undo with --json: stdout is
    one JSON object each, and its figures agree with the store."""
    path = _scribbled_sample(tmp_path)
    run_json = _json_runner(capsys)
    train = run_json(["train", path, "--steps", "20", "--threads", "1"])
    assert train["model"] == "unet" and train["iteration"] == 1 and train["steps"] == 20
    assert train["temperature"] >= 1.0 and sum(train["class_pixels"]) > 0
    pred = run_json(["predict", path, "--image", "sample", "--region", "0,48,0,48"])
    assert pred["images"][0]["region"] == [0, 48, 0, 48]
    pred = run_json(["predict", path, "--image", "sample", "--threshold", "0.5"])
    batch = pred["images"][0]
    assert batch["image"] == "sample" and batch["computed"] + batch["skipped"] == batch["blocks"]
    assert 0.0 <= batch["share_at_threshold"] <= 1.0
    before = ProjectStore.open(path).labels("sample").copy()
    push = run_json(["push", path, "--image", "sample", "--threshold", "0.5"])
    added = push["images"][0]["added"]
    after = ProjectStore.open(path).labels("sample")
    assert added == int(((after > 0) & (before == 0)).sum()) > 0
    undo = run_json(["undo", path, "--image", "sample"])
    assert undo == {"image": "sample", "reverted_pixels": added}


def test_train_for_seconds_or_with_the_filter_bank(tmp_path, capsys):
    """--time-budget trains that long (the report says how many steps ran); --filter-bank is
    another network, so the stored model is not continued, and the bank is kept with it."""
    path = _scribbled_sample(tmp_path)
    run_json = _json_runner(capsys, "--threads", "1")
    timed = run_json(["train", path, "--time-budget", "1.5"])
    assert timed["iteration"] == 1 and timed["steps"] >= 10 and timed["seconds"] >= 1.5
    banked = run_json(["train", path, "--filter-bank", "1,2", "--steps", "10"])
    assert banked["iteration"] == 2 and not banked["warm_start"] and banked["steps"] == 10
    assert ProjectStore.open(path).model_config("latest")["spec"]["bank"] == [1.0, 2.0]
    again = run_json(["train", path, "--filter-bank", "1,2", "--warm-steps", "5"])
    assert again["warm_start"] and again["steps"] == 5


def test_active_learning_commands_print_one_json_object(tmp_path, capsys):
    """rank, ask and suspects with --json: one JSON object each, matching the model."""
    path = _scribbled_sample(tmp_path)
    assert main(["train", path, "--steps", "20", "--threads", "1"]) == 0
    run_json = _json_runner(capsys)
    rank = run_json(["rank", path, "--tile", "48"])
    assert rank["strategy"] == "hise" and len(rank["items"]) == 4
    assert [r["rank"] for r in rank["items"]] == [1, 2, 3, 4]
    ask = run_json(["ask", path, "--image", "sample", "-n", "3"])
    assert len(ask["questions"]) == 3
    for q in ask["questions"]:
        assert 0 <= q["row"] < 96 and 0 <= q["col"] < 96 and q["first"] != q["second"]
    suspects = run_json(["suspects", path, "--threshold", "0.5"])
    assert suspects["threshold"] == 0.5 and isinstance(suspects["suspects"], list)


def test_image_lists_take_commas_and_spaces_alike():
    from napari_hitl.cli.common import image_names

    parser = build_parser()
    for cmd in ("train", "rank", "suspects"):
        for argv in (["a,b", "c"], ["a", "b,c"], ["a,b,c"]):
            args = parser.parse_args([cmd, "store.zarr", "--images", *argv])
            assert image_names(args.images) == ["a", "b", "c"], (cmd, argv)
    assert image_names(None) is None and image_names([" , "]) is None


def test_every_option_of_every_command_has_help():
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {a.option_strings[-1] if a.option_strings else a.dest}"
        for name, parser in sub.choices.items()
        for a in parser._actions
        if not a.help and not isinstance(a, argparse._HelpAction)
    ]
    assert not missing, missing


def test_training_aid_options_reach_the_train_config():
    from napari_hitl.cli.common import train_config

    for cmd in (["train", "s.zarr"], ["simulate", "--images", "i", "--masks", "m", "--out", "o"]):
        args = build_parser().parse_args(
            [*cmd, "--propagate-weight", "0.3", "--potts-weight", "0.1", "--calibration", "nll",
             "--novelty-gate", "3", "--time-budget", "12.5", "--filter-bank", "1, 2",
             "--row-position", "--no-band-jitter", "--image-power", "0.5", "--lovasz-weight", "0.5"]
        )  # fmt: skip
        cfg = train_config(args)
        assert not cfg.band_jitter and cfg.image_power == 0.5
        assert (cfg.propagate_weight, cfg.potts_weight, cfg.calibration) == (0.3, 0.1, "nll")
        assert cfg.novelty_gate == 3.0 and cfg.time_budget == 12.5
        assert cfg.filter_bank == [1.0, 2.0] and cfg.row_position and cfg.lovasz_weight == 0.5
    args = build_parser().parse_args(["train", "s.zarr", "--filter-bank", "on"])
    assert train_config(args).filter_bank == [1.0, 2.0, 4.0, 8.0]
    cfg = train_config(build_parser().parse_args(["train", "s.zarr"]))
    assert (cfg.propagate_weight, cfg.potts_weight, cfg.calibration) == (0.0, 0.0, None)
    assert cfg.time_budget is None and cfg.filter_bank is None  # unset: steps, no bank
    assert not cfg.row_position and cfg.band_jitter and cfg.lovasz_weight == 0.0
    assert cfg.image_power == TrainConfig().image_power == 0.0
    assert cfg.novelty_gate == TrainConfig().novelty_gate  # unset: the config's default
