"""Copy the repository URL from _config.yml (repository.url, the one place it is set) into the notebooks.

The Colab badge (first markdown cell) and the install cell (first code cell) of each notebook need the
URL in their own text, because Colab opens a notebook without the rest of the repository. Run this after
changing repository.url or repository.branch; notebooks/test_committed_notebooks.py checks they agree.
Only those two cells are rewritten; outputs and execution counts are kept.

    python book/sync_repository_url.py
"""
import re
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"].rstrip("/")
    branch = config["repository"].get("branch", "main")
    owner_repo = re.sub(r"^https://github\.com/", "", url)
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        markdown = next(c for c in nb.cells if c.cell_type == "markdown")
        markdown.source = re.sub(r"https://colab\.research\.google\.com/github/[^)\s]+",
                                 f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/notebooks/{path.name}",
                                 markdown.source)
        setup = next(c for c in nb.cells if c.cell_type == "code")
        setup.source = re.sub(r'REPO_URL = "[^"]*"', f'REPO_URL = "{url}"', setup.source)
        nbformat.write(nb, path)
        print(f"{path.relative_to(ROOT)}: {url} ({branch})")


if __name__ == "__main__":
    main()
