"""`scripts/avx2.sh`, with which `.ci/run` re-checks the learned effects on an AVX-512 host,
really hands torch and numpy the kernels of an AVX2-only CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, torch
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
print(json.dumps({
    "torch": torch.backends.cpu.get_cpu_capability(),
    "numpy": [f for f in __cpu_dispatch__ if __cpu_features__[f]],  # the loops it dispatches to
}))
"""


def test_the_script_caps_torch_and_numpy_at_avx2():
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "avx2.sh"), sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["torch"] == "AVX2"
    assert not [f for f in seen["numpy"] if f == "X86_V4" or f.startswith("AVX512")], seen


def test_ci_reruns_learned_effects_with_the_script_only_on_avx512_hosts():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "grep -qw avx512f /proc/cpuinfo" in ci
    assert "bash scripts/avx2.sh python -m pytest" in ci
    for path in ci.split("bash scripts/avx2.sh python -m pytest", 1)[1].split():
        if path.startswith("tests/"):
            assert (ROOT / path).is_file(), path  # a renamed test file fails here, not silently
