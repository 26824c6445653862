#!/usr/bin/env bash
# The prepared GPU check (bench/gpu_check.py): `bash bench/gpu_check.sh` on a CUDA machine,
# `bash bench/gpu_check.sh --tiny` on the CPU. Runs from any folder, with or without the package
# installed (src/ is put first on PYTHONPATH). The last line of output is one JSON summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" "$root/bench/gpu_check.py" "$@"
