"""The book's results at a glance are what book/results_table.py writes from results/ (no hand edits)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_results_table_is_regenerated_without_a_diff():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "book" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == (ROOT / "book" / "results_table.md").read_text(), \
        "book/results_table.md differs from what `python book/results_table.py` writes: run it"
