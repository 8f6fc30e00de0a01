#!/usr/bin/env bash
# The optional peers extra in its own fresh venv (antspyx caps numpy / scipy below the core's newest): install
# -e ".[peers,test]", check that the core still imports beside it, run the peer tests and the core tests of the
# modules the peers benchmark uses.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-peers
rm -rf "$VENV"
python3.11 -m venv "$VENV"
. "$VENV/bin/activate"
pip install -q -e ".[peers,test]"
python - <<'PY'
import monai_cardiac, monai_cardiac.engines, monai_cardiac.baselines as b
import numpy, scipy
absent = b.absent_peers()
print(f"peers venv: numpy {numpy.__version__}, scipy {scipy.__version__}; absent peers: {absent or 'none'}")
assert not absent, f"the peers extra did not install every peer: {absent}"
PY
python -m pytest -q tests/baselines tests/engines/test_probabilistic_evaluation.py tests/test_displacement.py \
    tests/metrics/test_jacobian.py tests/metrics/test_surface_distance.py
