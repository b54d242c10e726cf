import pytest

from mtl_utils.task_kinds import WORD_SHAPES, word_shape
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import IGNORE_INDEX, pad_batch, tokenize_words

NER = BUILTIN_TASKS["ner"]


def test_labels_on_first_subword_only(encoder):
    words = ["Blackburn", "visited", "Kwazulu-Natal", "."]
    tags = ["B-PER", "O", "B-LOC", "O"]
    out = tokenize_words(encoder.tokenizer, [words], 64, [tags], NER)
    ids, labels = out["input_ids"][0], out["labels"][0]
    tokens = encoder.tokenizer.convert_ids_to_tokens(ids)
    assert len(tokens) > len(words) + 2, "the example must contain words split into several subwords"
    assert labels[0] == IGNORE_INDEX and labels[-1] == IGNORE_INDEX  # [CLS], [SEP]
    labelled = [(tok, lab) for tok, lab in zip(tokens, labels) if lab != IGNORE_INDEX]
    assert [NER.labels[lab] for _, lab in labelled] == tags
    assert not any(tok.startswith("##") for tok, _ in labelled)
    assert out["labelled_words"][0] == [0, 1, 2, 3]
    assert [tokens[p] for p in out["word_starts"][0]] == [tok for tok, _ in labelled]


def test_truncation_keeps_labels_aligned(encoder):
    words = ["Paris"] + ["antidisestablishmentarianism"] * 20 + ["London"]
    tags = ["B-LOC"] + ["O"] * 20 + ["B-LOC"]
    with pytest.warns(UserWarning, match="cut by max_length"):
        out = tokenize_words(encoder.tokenizer, [words], 16, [tags], NER)
    labels = out["labels"][0]
    assert len(out["input_ids"][0]) == 16
    assert labels[1] == NER.label_id("B-LOC")  # "Paris" is still labelled right after [CLS]
    kept = out["labelled_words"][0]
    assert kept == list(range(len(kept))) and len(kept) < len(words)
    assert all(l == NER.label_id("O") for l in [labels[p] for p in out["word_starts"][0][1:]])


def test_tokens_and_tags_of_different_lengths(encoder):
    with pytest.raises(ValueError, match="3 tokens but 2 tags"):
        tokenize_words(encoder.tokenizer, [["a", "b", "c"]], 16, [["O", "O"]], NER)


def test_tag_outside_label_set(encoder):
    with pytest.raises(ValueError, match="'B-FOO' is not in its label set"):
        tokenize_words(encoder.tokenizer, [["a"]], 16, [["B-FOO"]], NER)


def test_word_shapes():
    names = [WORD_SHAPES[word_shape(w)] for w in ["the", "Paris", "NATO", "iPhone", "1996", ",", "U.S."]]
    assert names == ["lower", "Title", "UPPER", "mixed", "digits", "other", "UPPER"]


def test_dynamic_padding_pads_to_longest_in_batch():
    batch = pad_batch([{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": [0, 1, 0]},
                       {"input_ids": [1], "attention_mask": [1], "labels": [2]}], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [1, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[0, 1, 0], [2, IGNORE_INDEX, IGNORE_INDEX]]


def test_padding_is_generic_any_per_token_column_gets_zeros_a_sentence_label_is_stacked():
    batch = pad_batch([{"input_ids": [5, 6], "attention_mask": [1, 1], "word_shape_ids": [2, 3], "labels": 1},
                       {"input_ids": [5], "attention_mask": [1], "word_shape_ids": [4], "labels": 0}], pad_token_id=9)
    assert list(batch) == ["input_ids", "attention_mask", "word_shape_ids", "labels"]
    assert batch["input_ids"].tolist() == [[5, 6], [5, 9]] and batch["word_shape_ids"].tolist() == [[2, 3], [4, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_word_features_are_computed_per_token_from_its_word(encoder):
    out = tokenize_words(encoder.tokenizer, [["Kwazulu-Natal", "is", "NATO"]], 64, word_features={"shape": word_shape})
    tokens = encoder.tokenizer.convert_ids_to_tokens(out["input_ids"][0])
    assert len(tokens) > 5 and set(out) >= {"shape", "labelled_words", "word_starts"} and "labels" not in out
    names = [WORD_SHAPES[s] for s in out["shape"][0]]
    assert names[0] == names[-1] == "pad" and names[1:-1] == ["mixed"] * (len(tokens) - 4) + ["lower", "UPPER"]
