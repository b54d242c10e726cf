"""Checks on the committed notebook files themselves (nothing is executed).

The book shows the committed outputs (execute_notebooks: off), so they must come from one clean
top-to-bottom full-mode run, contain a figure, and point to the repository set in _config.yml.
"""
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"].get("branch", "main")
OWNER_REPO = re.sub(r"^https://github\.com/", "", REPO_URL)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def output_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        text = output.get("text", output.get("data", {}).get("text/plain", ""))
        parts.append("".join(text) if isinstance(text, list) else text)
    return "".join(parts)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_come_from_one_clean_full_mode_run(path):
    cells = code_cells(load(path))
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"execution counts {counts}: rerun top to bottom"
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"error outputs: {[e.get('ename') for e in errors]}"
    assert any("mode: full" in output_text(c) for c in cells), "outputs are not from a full-mode run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_has_a_figure(path):
    outputs = [o for c in code_cells(load(path)) for o in c["outputs"]]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure in the committed outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_links_use_the_configured_repository(path):
    nb = load(path)
    first_markdown = "".join(next(c for c in nb["cells"] if c["cell_type"] == "markdown")["source"])
    badge = f"https://colab.research.google.com/github/{OWNER_REPO}/blob/{BRANCH}/notebooks/{path.name}"
    assert badge in first_markdown, f"the Colab badge should link to {badge} (run book/sync_repository_url.py)"
    setup = "".join(code_cells(nb)[0]["source"])
    assert f'REPO_URL = "{REPO_URL}"' in setup, "the install cell's REPO_URL differs from _config.yml"
    assert f'BRANCH = "{BRANCH}"' in setup, "the install cell's BRANCH differs from _config.yml"
    assert 'f"mtl_utils @ git+{REPO_URL}@{BRANCH}"' in setup, "the install cell must install BRANCH"
    assert '"google.colab" in sys.modules' in setup, "the first cell must install only inside Colab"


def test_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}" in toc, f"{path.name} is not in _toc.yml"


# Every page a reader sees, and the README; links to other GitHub repositories belong in
# book/references.bib, so any github.com link here must be this project's configured one.
PAGES = [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md")), *NOTEBOOKS]
GITHUB_URL = re.compile(r"https://(?:colab\.research\.google\.com/github/|github\.com/)[^\s)\"'`<>@\]\\]+")


def page_text(path: Path) -> str:
    """A page's own text: for a notebook its cells' sources, not outputs (library messages)."""
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8")
    return "\n".join("".join(cell["source"]) for cell in load(path)["cells"])


def is_configured(url: str) -> bool:
    colab = f"https://colab.research.google.com/github/{OWNER_REPO}/"
    if url.startswith(colab):
        return url.startswith(f"{colab}blob/{BRANCH}/")
    if url.rstrip("/.") == REPO_URL:
        return True
    if not url.startswith(REPO_URL + "/"):
        return False
    kind = url[len(REPO_URL) + 1:].split("/")[0]  # blob, tree, issues, ...
    return kind not in ("blob", "tree") or url.startswith(f"{REPO_URL}/{kind}/{BRANCH}/")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_repository_url_is_the_configured_one(path):
    others = sorted({url for url in GITHUB_URL.findall(page_text(path)) if not is_configured(url)})
    assert not others, (f"{path.name} links to {others}; the configured repository is {REPO_URL} "
                        f"(branch {BRANCH}): run book/sync_repository_url.py after changing it, "
                        "and cite other repositories in book/references.bib")


# The story names no machine, instruction set, commit or past bug: those live on the provenance page.
STORY_ONLY = re.compile(r"\b(AVX[\w-]*|EPYC|Xeon|bug|before the fix|[0-9a-f]{7,40})\b")
STORY_PAGES = [p for p in sorted((ROOT / "book").glob("*.md"))
               if p.name not in ("provenance.md", "glossary.md", "references.md")] + NOTEBOOKS


@pytest.mark.parametrize("path", STORY_PAGES, ids=lambda p: p.name)
def test_the_story_names_no_machine_commit_or_past_bug(path):
    if path.suffix == ".ipynb":
        text = "\n".join("".join(c["source"]) for c in load(path)["cells"] if c["cell_type"] == "markdown")
    else:
        text = path.read_text(encoding="utf-8")
    found = sorted({m.group(0) for m in STORY_ONLY.finditer(text)})
    assert not found, f"{path.name} names {found}: machines, commits and bug histories go on book/provenance.md"
