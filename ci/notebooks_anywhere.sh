#!/usr/bin/env bash
# Notebooks 01-02 in fast mode from a temporary folder, against a non-editable install of the
# package in a fresh virtual environment: no checkout beside them, as in Colab.
#     bash ci/notebooks_anywhere.sh
# Versions: the pins of requirements.txt (torch's CPU wheel: set PIP_EXTRA_INDEX_URL to
# https://download.pytorch.org/whl/cpu where it is not on disk). Data: $MTL_DATA_DIR, or
# ../shared/data beside the checkout if there is one, else the Hugging Face Hub.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
data="${MTL_DATA_DIR:-$repo/../shared/data}"
if [ -d "$data" ]; then
    export MTL_DATA_DIR="$(realpath "$data")" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
else
    unset MTL_DATA_DIR
fi
# Build from a copy, so that nothing (build/, *.egg-info) is written into the checkout.
mkdir "$work/src" "$work/run"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/mtl_utils" "$work/src/"
grep -vE '^\s*(-e|#|$)' "$repo/requirements.txt" >"$work/pins.txt"
python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
pip install -q -U pip
pip install -q -c "$work/pins.txt" "$work/src[default-model]" sentence-transformers pytest nbval ipykernel
cp "$repo"/notebooks/0[12]_*.ipynb "$repo/notebooks/nbval_sanitize.cfg" "$work/run/"
cd "$work/run"
python -c "import mtl_utils, sys; assert 'site-packages' in mtl_utils.__file__, mtl_utils.__file__"
MTL_FAST=1 TQDM_DISABLE=1 pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
    --nbval-sanitize-with nbval_sanitize.cfg 01_*.ipynb 02_*.ipynb
