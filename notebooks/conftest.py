"""pytest settings for the notebooks (nbval) and the checks on the committed notebooks.

Run from the repository root:
    MTL_FAST=1 TQDM_DISABLE=1 pytest --nbval-lax --nbval-current-env \
        --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks
"""
# Jupyter's autosave copies are not notebooks of this book (pyproject's norecursedirs replaces
# pytest's default, which would skip dot-folders).
collect_ignore_glob = [".ipynb_checkpoints/*", "**/.ipynb_checkpoints/*"]
