"""The development split (selection.py) and document context (context.py): disjoint from what trains and from
the reported sets, reproducible, whole documents; no label on a context token; nothing changed at size 0."""
import collections
import json

import pytest
from datasets import Dataset

from mtl_utils.context import add_document_context
from mtl_utils.data import load_conll2003, load_sst2, source_sentences
from mtl_utils.prepare import prepare_tasks
from mtl_utils.selection import carve_dev
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import IGNORE_INDEX, tokenize_split, tokenize_words
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


def test_sst2_dev_split_keeps_each_sentence_with_its_phrases(shared_data):
    sst2 = load_sst2(shared_data)["train"]
    train, dev, by = carve_dev(sst2, 0.1, seed=0)
    assert by == "source_sentence"
    assert set(train["source_sentence"]).isdisjoint(dev["source_sentence"])
    # a dev sentence (a source) is inside no training phrase: the phrases of its sentence are all in dev
    dev_sentences = {sst2[i]["text"] for i in set(dev["source_sentence"])}
    assert len(dev_sentences) > 500
    training_text = "\n".join(f" {t} " for t in train["text"])
    assert not any(f" {s} " in training_text for s in list(dev_sentences)[:300])
    everything, carved = collections.Counter(sst2["label"]), collections.Counter(dev["label"])
    for label, n in everything.items():  # drawn by sentence, not by label: the proportions about the same
        assert abs(carved[label] / len(dev) - n / len(sst2)) < 0.03


def test_source_sentences_match_whole_words():
    phrases = ["a b c", "b c", "c", "d", "bc", "a b c d e"]
    assert source_sentences(phrases) == [5, 5, 5, 5, 4, 5]  # "bc" is inside no phrase word for word


def test_a_split_without_sources_is_stratified_by_label():
    split = Dataset.from_dict({"text": [f"t{i}" for i in range(100)], "label": ["a"] * 80 + ["b"] * 20})
    train, dev, by = carve_dev(split, 0.1, seed=0)
    assert by == "label" and collections.Counter(dev["label"]) == {"a": 8, "b": 2}
    assert set(train["text"]).isdisjoint(dev["text"]) and len(train) + len(dev) == 100


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_dev_fraction_outside_the_open_interval(fraction):
    with pytest.raises(ValueError, match=f"dev fraction must be between 0 and 1 \\(exclusive\\), got {fraction}"):
        carve_dev(Dataset.from_dict({"text": ["a", "b"], "label": ["x", "y"]}), fraction)


def test_prepared_dev_split_is_apart_from_training_rows_and_reported_sets(shared_data, encoder):
    ner, sentiment = BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]
    data = prepare_tasks([ner, sentiment], encoder.tokenizer, 64, shared_data, max_train=500, seed=3,
                         dev_fraction=0.1, dev_seed=0)
    assert list(data.held_out) == ["dev", "validation", "test"]
    assert data.dev_carved["ner"]["drawn_by"] == "document" and data.dev_carved["sentiment"]["drawn_by"] == "source_sentence"
    conll = load_conll2003(shared_data)
    dev = data.held_out["dev"]["ner"][0]
    # The dev rows are training-file rows (document and words), none of them among the rows trained on.
    train_file = {(d, tuple(w)) for d, w in zip(conll["train"]["document"], conll["train"]["tokens"])}
    dev_rows = {(d, tuple(w)) for d, w in zip(dev["document"], dev["tokens"])}
    trained = {(d, tuple(w)) for d, w in zip(data.train_splits["ner"]["document"], data.train_splits["ner"]["tokens"])}
    assert dev_rows <= train_file and dev_rows.isdisjoint(trained)
    assert set(dev["document"]).isdisjoint(data.train_splits["ner"]["document"])
    # The reported sets are their files, whole and untouched (the dev rows come from the training file).
    for name in ("validation", "test"):
        assert data.held_out[name]["ner"][0]["tokens"] == conll[name]["tokens"]
    sst2_dev, sst2_trained = data.held_out["dev"]["sentiment"][0], data.train_splits["sentiment"]
    assert set(sst2_dev["source_sentence"]).isdisjoint(sst2_trained["source_sentence"])
    assert data.held_out["validation"]["sentiment"][0]["text"] == load_sst2(shared_data)["validation"]["text"]


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


def test_context_window_keeps_the_sentence_whole_and_its_context_beside_it(encoder):
    tokenizer, ner = encoder.tokenizer, BUILTIN_TASKS["ner"]
    words, tags = ["Peter", "Blackburn", "flew", "to", "Paris", "\u200b", "."], ["B-PER", "I-PER", "O", "O", "B-LOC", "O", "O"]
    before, after = ["EU", "rejects", "German", "call"], "to boycott British lamb , said the Commission on Friday .".split()
    full = tokenizer([[*before, *words, *after]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
    own = tokenizer([words], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
    for max_length in (9, 10, 12, 16, 64):
        plain = tokenize_words(tokenizer, [words], max_length, [tags], ner)
        context = tokenize_words(tokenizer, [words], max_length, [tags], ner, contexts=[(before, after)])
        ids = context["input_ids"][0]
        assert len(ids) <= max_length and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        inner = ids[1:-1]  # a contiguous stretch of the document around the sentence
        assert any(full[k:k + len(inner)] == inner for k in range(len(full)))
        if len(own) + 2 >= max_length:  # the sentence alone fills the room: cut as without context
            assert context == plain
        else:  # all of the sentence, then context on both sides while there is room
            assert own == inner[inner.index(own[0]):][:len(own)] and len(ids) == min(max_length, len(full) + 2)
            assert context["words_kept"] == plain["words_kept"] == [7]
        assert [context["labels"][0][p] for p in context["word_starts"][0]] == \
            [plain["labels"][0][p] for p in plain["word_starts"][0]]
    assert 5 not in plain["labelled_words"][0]  # the zero-width word has no subword, in both
    left = tokenize_words(tokenizer, [words], 16, [tags], ner, contexts=[(["EU"], after)])["input_ids"][0]
    assert left[1] == tokenizer.convert_tokens_to_ids("eu") and len(left) == 16  # one token on the left; the rest of the room on the right


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
