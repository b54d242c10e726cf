"""The development split (selection.py) and document context (context.py): disjoint from what trains and from
the reported sets, reproducible, whole documents; no label on a context token; nothing changed at size 0."""
import collections
import json

import pytest
from datasets import Dataset

from mtl_utils.context import add_document_context
from mtl_utils.data import load_conll2003, load_sst2
from mtl_utils.prepare import prepare_tasks
from mtl_utils.selection import carve_dev
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import IGNORE_INDEX, tokenize_split
from mtl_utils.train import main


def with_row_ids(split: Dataset) -> Dataset:
    return split.add_column("row", list(range(len(split))))


def test_dev_split_is_disjoint_reproducible_and_keeps_documents_whole(shared_data):
    conll = with_row_ids(load_conll2003(shared_data)["train"])
    train, dev, by = carve_dev(conll, 0.1, seed=0)
    assert by == "document"
    assert set(train["row"]).isdisjoint(dev["row"]) and len(train) + len(dev) == len(conll)
    assert set(train["document"]).isdisjoint(dev["document"])  # no document on both sides
    assert 0.05 < len(dev) / len(conll) < 0.15
    again_train, again_dev, _ = carve_dev(conll, 0.1, seed=0)
    assert again_dev["row"] == dev["row"] and again_train["row"] == train["row"]
    assert carve_dev(conll, 0.1, seed=1)[1]["row"] != dev["row"]
    assert dev["row"] == sorted(dev["row"])  # the file's order on both sides


def test_dev_split_is_stratified_by_label(shared_data):
    sst2 = load_sst2(shared_data)["train"]
    train, dev, by = carve_dev(sst2, 0.1, seed=0)
    assert by == "label"
    everything, carved = collections.Counter(sst2["label"]), collections.Counter(dev["label"])
    for label, n in everything.items():
        assert carved[label] == round(0.1 * n)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_dev_fraction_outside_the_open_interval(fraction):
    with pytest.raises(ValueError, match=f"dev fraction must be between 0 and 1 \\(exclusive\\), got {fraction}"):
        carve_dev(Dataset.from_dict({"text": ["a", "b"], "label": ["x", "y"]}), fraction)


def test_prepared_dev_split_is_apart_from_training_rows_and_reported_sets(shared_data, encoder):
    ner, sentiment = BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]
    data = prepare_tasks([ner, sentiment], encoder.tokenizer, 64, shared_data, max_train=500, seed=3,
                         dev_fraction=0.1, dev_seed=0)
    assert list(data.held_out) == ["dev", "validation", "test"]
    assert data.dev_carved["ner"]["drawn_by"] == "document" and data.dev_carved["sentiment"]["drawn_by"] == "label"
    conll = load_conll2003(shared_data)
    dev = data.held_out["dev"]["ner"][0]
    # The dev rows are training-file rows (document and words), none of them among the rows trained on.
    train_file = {(d, tuple(w)) for d, w in zip(conll["train"]["document"], conll["train"]["tokens"])}
    dev_rows = {(d, tuple(w)) for d, w in zip(dev["document"], dev["tokens"])}
    trained = {(d, tuple(w)) for d, w in zip(data.train_splits["ner"]["document"], data.train_splits["ner"]["tokens"])}
    assert dev_rows <= train_file and dev_rows.isdisjoint(trained)
    assert set(dev["document"]).isdisjoint(data.train_splits["ner"]["document"])
    # No dev sentence is a reported sentence unless the original files already share it (short ones like "-").
    for name in ("validation", "test"):
        reported = set(map(tuple, conll[name]["tokens"]))
        assert {w for _, w in dev_rows} & reported <= {w for _, w in train_file} & reported
        assert data.held_out[name]["ner"][0]["tokens"] == conll[name]["tokens"]  # reported sets untouched
    sst2_dev, sst2_trained = data.held_out["dev"]["sentiment"][0], data.train_splits["sentiment"]
    assert set(sst2_dev["text"]).isdisjoint(sst2_trained["text"]) or \
        set(sst2_dev["text"]) & set(sst2_trained["text"]) <= duplicated(load_sst2(shared_data)["train"]["text"])
    assert data.held_out["validation"]["sentiment"][0]["text"] == load_sst2(shared_data)["validation"]["text"]


def duplicated(texts: list[str]) -> set[str]:
    return {text for text, n in collections.Counter(texts).items() if n > 1}


def test_document_context_puts_no_label_on_a_context_token(shared_data, encoder):
    ner = BUILTIN_TASKS["ner"]
    split = load_conll2003(shared_data)["validation"].select(range(60))
    plain = tokenize_split(split, ner, encoder.tokenizer, 128)
    context = tokenize_split(add_document_context(split, 2), ner, encoder.tokenizer, 128)
    longer = 0
    for i in range(len(split)):
        labelled = [p for p, label in enumerate(context["labels"][i]) if label != IGNORE_INDEX]
        # the labels sit exactly on the sentence's own first subwords, in order, with the same ids and tags
        assert labelled == context["word_starts"][i]
        assert [context["input_ids"][i][p] for p in labelled] == [plain["input_ids"][i][p] for p in plain["word_starts"][i]]
        assert [context["labels"][i][p] for p in labelled] == [plain["labels"][i][p] for p in plain["word_starts"][i]]
        assert context["labelled_words"][i] == plain["labelled_words"][i]
        assert len(context["input_ids"][i]) <= 128
        longer += len(context["input_ids"][i]) > len(plain["input_ids"][i])
    assert longer > 50  # the context is really there


def test_document_context_of_size_0_changes_nothing(shared_data, encoder):
    ner = BUILTIN_TASKS["ner"]
    split = load_conll2003(shared_data)["validation"].select(range(200))
    assert add_document_context(split, 0) is split
    empty = split.add_column("context_before", [[]] * len(split)).add_column("context_after", [[]] * len(split))
    for max_length in (256, 12):  # also where the sentence itself is cut
        plain = tokenize_split(split, ner, encoder.tokenizer, max_length)
        assert tokenize_split(empty, ner, encoder.tokenizer, max_length) == plain
    with_zero = prepare_tasks([ner], encoder.tokenizer, 64, shared_data, max_train=50, max_eval=20, context=0)
    without = prepare_tasks([ner], encoder.tokenizer, 64, shared_data, max_train=50, max_eval=20)
    assert with_zero.train_features == without.train_features
    assert with_zero.held_out["test"]["ner"][1] == without.held_out["test"]["ner"][1]


def test_document_context_stays_inside_its_document():
    split = Dataset.from_dict({"tokens": [["a"], ["b"], ["c"], ["d"]], "tags": [["O"]] * 4, "document": [0, 0, 1, 1]})
    context = add_document_context(split, 3)
    assert context["context_before"] == [[], ["a"], [], ["c"]]
    assert context["context_after"] == [["b"], [], ["d"], []]
    with pytest.raises(ValueError, match="context sentences must be a whole number, 0 or more; got -1"):
        add_document_context(split, -1)


def test_cli_dev_split_records_its_selection(shared_data, tmp_path):
    out = tmp_path / "run"
    main(["--data-dir", str(shared_data), "--max-train-samples", "32", "--max-eval-samples", "32", "--epochs", "1",
          "--batch-size", "16", "--output-dir", str(out), "--quiet", "--dev-fraction", "0.1", "--context-sentences", "1"])
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    selection = metrics["selection"]
    assert selection["split"] == "dev" and selection["fraction"] == 0.1 and selection["seed"] == 0
    assert selection["carved"]["ner"]["drawn_by"] == "document" and selection["carved"]["ner"]["rows"] > 1000
    assert selection["scored"] == {"ner": 32, "sentiment": 32} and 0 < selection["dev_similarity_kept"] <= 1
    assert set(metrics["tasks"]["ner"]) == {"dev", "validation", "test"}
    # every epoch scored on the dev split, the reported sets (STS-B too) once, after training
    assert history["epochs"][-1]["validation"] == {task: s["dev"] for task, s in metrics["tasks"].items()}
    assert "stsb_spearman" not in history["epochs"][-1] and 0 < metrics["stsb_spearman"] <= 1
    from mtl_utils.model import MultiTaskModel
    assert MultiTaskModel.from_pretrained(out / "model").config.context_sentences == 1  # kept with the model
