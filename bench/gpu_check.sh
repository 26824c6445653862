#!/usr/bin/env bash
# The prepared GPU check (bench/gpu_check.py): `bash bench/gpu_check.sh` on a CUDA machine,
# `bash bench/gpu_check.sh --tiny` on the CPU. Runs from any folder, with or without the package
# installed (src/ is put first on PYTHONPATH). The last line of output is one JSON summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
# The interpreter: $PYTHON, else the project's .venv (scripts/setup.sh), else python on PATH.
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python; fi
fi
exec "$python" "$root/bench/gpu_check.py" "$@"
