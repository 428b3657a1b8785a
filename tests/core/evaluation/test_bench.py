"""``napari-hitl bench`` measures every model and reports ratios (no timing is asserted)."""

from __future__ import annotations

import json

from napari_hitl.cli import main


def test_bench_reports_ratios_and_flops(tmp_path, capsys):
    rc = main(
        [
            "bench",
            "--models",
            "unet,unet:bank,rf",
            "--size",
            "96",
            "--iter-size",
            "64",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert set(result["models"]) == {"unet", "unet:bank", "rf"}
    assert result["models"]["unet:bank"]["train_warm_vs_rf"] > 0
    unet = result["models"]["unet"]
    assert unet["infer_vs_rf"] > 0 and result["models"]["rf"]["infer_vs_rf"] == 1.0
    assert unet["flops_per_px"] > 10_000 and unet["fraction_of_matmul"] > 0
    assert set(result["targets_met"]) == {"infer_mpx_s", "iteration_s"}
    assert "| unet |" in (tmp_path / "bench.md").read_text()


def test_bench_refuses_an_unknown_model_option(capsys):
    assert main(["bench", "--models", "rf:bank", "--size", "64", "--iter-size", "64"]) == 2
    assert "the U-Net's filter bank is unet:bank" in capsys.readouterr().err
