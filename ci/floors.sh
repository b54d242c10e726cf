#!/usr/bin/env bash
# The unit suite against the dependency floors (ci/floors.txt), in a fresh virtual environment
# outside the checkout:
#     bash ci/floors.sh [VENV_DIR]        # default VENV_DIR: ${TMPDIR:-/tmp}/mtl-floors-venv
# PYTHON: the interpreter (default python3.10, the oldest supported). TORCH_INDEX: where the CPU
# torch comes from (default the PyTorch CPU index; empty: PyPI alone, whose Linux torch is the CUDA
# build, several GB). FLOORS_TORCH=X.Y.Z: another torch than the floor, e.g. a wheel at hand
# offline; such a run does not test the torch floor.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-${TMPDIR:-/tmp}/mtl-floors-venv}"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
cp ci/floors.txt "$constraints"
if [ -n "${FLOORS_TORCH:-}" ]; then sed -i "s/^torch==.*/torch==$FLOORS_TORCH/" "$constraints"; fi
torch_index="${TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
rm -rf "$venv"
"${PYTHON:-python3.10}" -m venv "$venv"
. "$venv/bin/activate"
pip install -q -U pip  # the pip that Python 3.10 bundles cannot build seqeval's sdist
pip install -q -c "$constraints" ${torch_index:+--extra-index-url "$torch_index"} \
    -e ".[default-model]" pytest sentence-transformers
python -V
pip list 2>/dev/null | grep -iE "^(torch|transformers|tokenizers|datasets|accelerate|safetensors|seqeval|\
scipy|scikit-learn|numpy|tqdm|matplotlib|peft|sentence-transformers|huggingface[-_]hub) "
TQDM_DISABLE=1 pytest -q
