"""Copy the repository URL and branch from _config.yml (repository.url and .branch,
the one place they are set) into the notebooks and the book's pages.

The Colab badge (first markdown cell) and the install cell (first code cell) of each
notebook need them in their own text, because Colab opens a notebook without the rest
of the repository: the install cell pip-installs `mtl_utils @ git+{REPO_URL}@{BRANCH}`,
the configured branch, not the default one. Run this after changing repository.url or
repository.branch; notebooks/test_committed_notebooks.py checks they agree. Links to files
of the repository as configured before (`{old url}/blob/{old branch}/...`, the old values read
from the notebooks' install cells) in the notebooks' markdown cells, in book/*.md and in
README.md are rewritten too; links to other repositories are left alone. Outputs and
execution counts are kept.

    python book/sync_repository_url.py
"""
import re
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The comment above REPO_URL in each install cell.
NOTE = ("# Set in _config.yml (repository.url, .branch), copied by "
        "book/sync_repository_url.py")
# The REPO_URL line (a comment line naming this script above it, or a comment after it)
# and the BRANCH line.
REPOSITORY_LINES = re.compile(r'^(?:# [^\n]*sync_repository_url\.py[^\n]*\n)?'
                              r'REPO_URL = "[^"]*"[^\n]*\n'
                              r'(?:BRANCH = "[^"]*"[^\n]*\n)?', re.MULTILINE)
INSTALL_CALL = re.compile(r'^( *)subprocess\.run\(\[sys\.executable, "-m", "pip", '
                          r'"install".*?check=True\)', re.MULTILINE | re.DOTALL)
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+")
OLD_REPOSITORY = re.compile(r'^REPO_URL = "([^"]*)"[^\n]*\n(?:BRANCH = "([^"]*)")?', re.MULTILINE)


def synced_links(text: str, old: set[tuple[str, str]], url: str, branch: str) -> str:
    """Links to files of the repository as it was configured before (each (url, branch) in `old`,
    read from the notebooks' install cells) pointed at url and branch; other links stay as they are."""
    for old_url, old_branch in old:
        for kind in ("blob", "tree"):
            text = text.replace(f"{old_url}/{kind}/{old_branch}/", f"{url}/{kind}/{branch}/")
    return text


def synced_setup(source: str, url: str, branch: str) -> str:
    """The install cell with REPO_URL and BRANCH set: it installs that branch."""
    lines = f'{NOTE}\nREPO_URL = "{url}"\nBRANCH = "{branch}"\n'
    source, found = REPOSITORY_LINES.subn(lambda _: lines, source, count=1)
    if not found:
        raise ValueError("the install cell has no REPO_URL line")

    def install(match: re.Match) -> str:
        pad = match.group(1)
        return (f'{pad}subprocess.run([sys.executable, "-m", "pip", "install", "-q",\n'
                f'{pad}                f"mtl_utils @ git+{{REPO_URL}}@{{BRANCH}}", '
                f'"sentence-transformers"],\n'
                f'{pad}               check=True)')

    source, found = INSTALL_CALL.subn(install, source, count=1)
    if not found:
        raise ValueError("the install cell has no pip install call")
    return source


def main() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"].rstrip("/")
    branch = config["repository"].get("branch", "main")
    owner_repo = re.sub(r"^https://github\.com/", "", url)
    notebooks = {path: nbformat.read(path, as_version=4)
                 for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
    old = set()  # the repository and branch the notebooks point to now
    for nb in notebooks.values():
        setup = next(c for c in nb.cells if c.cell_type == "code")
        for old_url, old_branch in OLD_REPOSITORY.findall(setup.source):
            old.add((old_url.rstrip("/"), old_branch or "main"))
    for path, nb in notebooks.items():
        markdown = next(c for c in nb.cells if c.cell_type == "markdown")
        badge = (f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}"
                 f"/notebooks/{path.name}")
        markdown.source = BADGE.sub(badge, markdown.source)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = synced_links(cell.source, old, url, branch)
        setup = next(c for c in nb.cells if c.cell_type == "code")
        setup.source = synced_setup(setup.source, url, branch)
        nbformat.write(nb, path)
        print(f"{path.relative_to(ROOT)}: {url} ({branch})")
    for path in [*sorted((ROOT / "book").glob("*.md")), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        synced = synced_links(text, old, url, branch)
        if synced != text:
            path.write_text(synced, encoding="utf-8")
            print(f"{path.relative_to(ROOT)}: {url} ({branch})")


if __name__ == "__main__":
    main()
