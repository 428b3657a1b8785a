#!/usr/bin/env bash
# Run a command with the numeric kernels an AVX2-only CPU would use, on any x86 host.
#
# torch (ATen and oneDNN), MKL, OpenBLAS and numpy each pick their SIMD kernels at run time
# from what the CPU offers; AVX-512 and AVX2 kernels add in another order and round
# differently, and a training loop amplifies that like a seed. The tests must hold on both
# (developers' guide), so check a learned effect under both on the host you have:
#
#     bash scripts/avx2.sh .venv/bin/python -m pytest -q tests/core/learning
#     bash scripts/avx2.sh .venv/bin/python -c "import torch; print(torch.backends.cpu.get_cpu_capability())"
#
# On an AVX2-only CPU it changes nothing.
set -euo pipefail
export ATEN_CPU_CAPABILITY=avx2              # torch's own CPU kernels
export ONEDNN_MAX_CPU_ISA=AVX2               # torch's convolutions (oneDNN)
export MKL_ENABLE_INSTRUCTIONS=AVX2          # MKL, where torch uses it
export OPENBLAS_CORETYPE=Haswell             # numpy's OpenBLAS
export NPY_DISABLE_CPU_FEATURES="X86_V4,AVX512_ICL,AVX512_SPR"  # numpy's own SIMD loops
exec "$@"
