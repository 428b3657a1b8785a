"""``napari-hitl bench`` measures every model and reports ratios (no timing is asserted)."""

from __future__ import annotations

import json

from napari_hitl.cli import main


def test_bench_reports_ratios_and_flops(tmp_path, capsys):
    rc = main(
        [
            "bench",
            "--models",
            "unet,rf",
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
    assert set(result["models"]) == {"unet", "rf"}
    unet = result["models"]["unet"]
    assert unet["infer_vs_rf"] > 0 and result["models"]["rf"]["infer_vs_rf"] == 1.0
    assert unet["flops_per_px"] > 10_000 and unet["fraction_of_matmul"] > 0
    assert set(result["targets_met"]) == {"infer_mpx_s", "iteration_s"}
    assert "| unet |" in (tmp_path / "bench.md").read_text()
