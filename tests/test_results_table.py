"""The book's results tables are what book/results_table.py and book/dev_sweep.py write from results/ (no
hand edits)."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "book" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_results_table_is_regenerated_without_a_diff():
    assert load("results_table").render() == (ROOT / "book" / "results_table.md").read_text(), \
        "book/results_table.md differs from what `python book/results_table.py` writes: run it"


def test_the_dev_sweep_is_regenerated_without_a_diff():
    document, table, seeds_table = load("dev_sweep").sweep()
    assert table == (ROOT / "book" / "dev_sweep_table.md").read_text(), \
        "book/dev_sweep_table.md differs from what `python book/dev_sweep.py` writes: run it"
    assert seeds_table == (ROOT / "book" / "dev_sweep_seeds.md").read_text(), \
        "book/dev_sweep_seeds.md differs from what `python book/dev_sweep.py` writes: run it"
    assert document == json.loads((ROOT / "results" / "dev_sweep.json").read_text()), \
        "results/dev_sweep.json differs from what `python book/dev_sweep.py` writes: run it"


def test_the_sweep_rule_excludes_what_forgets_or_runs_over_budget():
    sweep = load("dev_sweep")
    rows = [{"name": sweep.BASE, "dev_ner_f1": 0.90, "dev_sentiment_accuracy": 0.90, "dev_similarity_kept": 0.95,
             "run_minutes": 15.0},
            {"name": "forgets", "dev_ner_f1": 0.99, "dev_sentiment_accuracy": 0.99, "dev_similarity_kept": 0.90,
             "run_minutes": 15.0},
            {"name": "slow", "dev_ner_f1": 0.99, "dev_sentiment_accuracy": 0.99, "dev_similarity_kept": 0.95,
             "run_minutes": sweep.BUDGET_MINUTES + 1},
            {"name": "better", "dev_ner_f1": 0.91, "dev_sentiment_accuracy": 0.90, "dev_similarity_kept": 0.945,
             "run_minutes": 15.0}]
    assert sweep.choose(rows) == "better"
    assert sweep.choose(rows[:3]) == sweep.BASE


def test_a_chosen_setting_without_three_seeds_stops_with_one_line():
    sweep = load("dev_sweep")
    try:
        sweep.seed_check("a-setting-run-once")
    except SystemExit as stop:
        assert "a-setting-run-once" in str(stop) and "SEEDS" in str(stop)
    else:
        raise AssertionError("seed_check ran without three seeds of the chosen setting")
