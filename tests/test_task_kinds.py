"""Task kinds: a new kind is one class; predict decodes entities as the strict metric counts them."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2, Entities

from mtl_utils.encoder import SentenceEncoder
from mtl_utils.evaluation import evaluate_task
from mtl_utils.freezing import apply_freezing
from mtl_utils.model import ModelConfig, MultiTaskModel
from mtl_utils.pooling import pool
from mtl_utils.predict import split_words
from mtl_utils.task_kinds import TASK_KINDS, TaskKind, entity_spans, register_task_kind
from mtl_utils.tasks import BUILTIN_TASKS, TaskSpec
from mtl_utils.tokenization import tokenize_sentences, tokenize_split
from mtl_utils.training import TrainConfig, train


class MultiLabelClassification(TaskKind):
    """Test-only kind: any number of labels per sentence (sigmoid per label, micro-F1). The defaults give
    its head (dropout and a linear layer on the pooled vector) and its feature cache rows and batches."""

    name, headline = "multilabel", "micro_f1"

    def tokenize(self, split, spec, tokenizer, max_length):
        features = tokenize_sentences(tokenizer, list(split["text"]), max_length, spec.name)
        return {**features, "labels": [[float(name in row) for name in spec.labels] for row in split["labels"]]}

    def collate(self, examples, pad_token_id):
        longest = max(len(e["input_ids"]) for e in examples)
        pad = lambda key, value: torch.tensor([e[key] + [value] * (longest - len(e[key])) for e in examples])
        return {"input_ids": pad("input_ids", pad_token_id), "attention_mask": pad("attention_mask", 0),
                "labels": torch.tensor([e["labels"] for e in examples])}

    def head_input(self, token_states, attention_mask, pooling):
        return pool(token_states, attention_mask, pooling)

    def loss(self, spec, logits, labels):
        return F.binary_cross_entropy_with_logits(logits, labels)

    def decode(self, spec, logits, example):
        return (logits > 0).int().tolist()

    def gold(self, split, features):
        return [[int(v) for v in row] for row in features["labels"]]

    def score(self, spec, gold, predictions):
        pairs = [(g, p) for gs, ps in zip(gold, predictions) for g, p in zip(gs, ps)]
        tp = sum(g and p for g, p in pairs)
        return {"micro_f1": 2 * tp / max(1, sum(g for g, _ in pairs) + sum(p for _, p in pairs)), "support": len(gold)}

    def describe(self, spec, logits, example, words, text):
        return [label for label, on in zip(spec.labels, self.decode(spec, logits, example)) if on]


TOPICS = ("sport", "money", "weather")
TEXTS = {"sport": ["the team won the match", "a late goal decided the game"],
         "money": ["shares fell on the stock market", "the bank raised interest rates"],
         "weather": ["heavy rain and strong wind", "a sunny and warm afternoon"]}


def synthetic_split(n: int) -> Dataset:
    """Sentences made of one or two topics' phrases; the labels are the topics used."""
    rows = {"text": [], "labels": []}
    for i in range(n):
        first, second = TOPICS[i % 3], TOPICS[(i // 3) % 3]
        topics = sorted({first, second})
        rows["text"].append(" and ".join(TEXTS[t][(i // 9) % 2] for t in topics))
        rows["labels"].append(topics)
    return Dataset.from_dict(rows)


@pytest.fixture()
def multilabel_kind():
    kind = register_task_kind(MultiLabelClassification())
    yield kind
    del TASK_KINDS[kind.name]


def test_a_new_kind_trains_evaluates_saves_and_predicts_without_touching_the_package(multilabel_kind, tmp_path):
    spec = TaskSpec("topics", "multilabel", TOPICS)
    torch.manual_seed(0)
    model = MultiTaskModel(SentenceEncoder.from_pretrained(), [spec, BUILTIN_TASKS["sentiment"]])
    tokenizer = model.encoder.tokenizer
    sentiment = Dataset.from_dict({"text": ["a gorgeous film", "dull and lifeless"] * 8,
                                   "label": ["positive", "negative"] * 8})
    train_features = {"topics": tokenize_split(synthetic_split(36), spec, tokenizer),
                      "sentiment": tokenize_split(sentiment, BUILTIN_TASKS["sentiment"], tokenizer)}
    held_out = synthetic_split(18)
    eval_sets = {"topics": (held_out, tokenize_split(held_out, spec, tokenizer))}
    before = evaluate_task(model, "topics", *eval_sets["topics"])
    history = train(model, train_features, eval_sets,
                    TrainConfig(epochs=4, batch_size=6, lr=1e-4, head_lr=1e-2, seed=0, quiet=True))
    after = history["epochs"][-1]["validation"]["topics"]
    assert {s["task"] for s in history["steps"]} == {"topics", "sentiment"}
    assert after["support"] == 18 and after["micro_f1"] > max(0.9, before["micro_f1"])

    model.save_pretrained(tmp_path / "m")
    loaded = MultiTaskModel.from_pretrained(tmp_path / "m")
    [prediction] = loaded.predict(["heavy rain and strong wind and the team won the match"])
    assert prediction["topics"] == ["sport", "weather"]
    assert prediction == model.predict(["heavy rain and strong wind and the team won the match"])[0]


def test_a_new_kind_trains_on_the_cached_features_of_a_frozen_backbone(multilabel_kind):
    """The default cache rows (one vector per sentence) and batches (stacked); the head's dropout draws the
    same masks as on re-encoded batches, so both runs take the same steps."""
    spec = TaskSpec("topics", "multilabel", TOPICS)
    runs = {}
    for cache in (True, False):
        torch.manual_seed(0)
        model = apply_freezing(MultiTaskModel(SentenceEncoder.from_pretrained(), [spec]), "backbone")
        features = {"topics": tokenize_split(synthetic_split(36), spec, model.encoder.tokenizer)}
        runs[cache] = train(model, features, {}, TrainConfig(epochs=3, batch_size=6, head_lr=1e-2, seed=0, quiet=True,
                                                             cache_frozen_backbone=cache))
    assert runs[True]["cached_features"] and not runs[False]["cached_features"]
    cached, reencoded = ([s["loss"] for s in runs[cache]["steps"]] for cache in (True, False))
    assert len(cached) == len(reencoded) == 18 and max(abs(a - b) for a, b in zip(cached, reencoded)) < 1e-4
    assert sum(cached[-6:]) < sum(cached[:6])  # and the head learns


def test_a_kind_that_lacks_a_method_fails_when_it_is_registered():
    class Incomplete(TaskKind):
        name, headline = "incomplete", "accuracy"

        def tokenize(self, split, spec, tokenizer, max_length):
            return {}

    with pytest.raises(TypeError, match=r"^task kind Incomplete lacks head_input, decode, score, describe \(see TaskKind\)$"):
        register_task_kind(Incomplete())
    assert "incomplete" not in TASK_KINDS


def strict_entities(tags: list[str]) -> tuple[list[tuple[str, int, int]], dict]:
    report = classification_report([tags], [tags], mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    return [(e.tag, e.start, e.end - 1) for e in Entities([tags], IOB2, suffix=False).entities[0]], report


@pytest.mark.parametrize("tags", [
    ["O", "I-PER", "I-PER", "O"],                       # I- after O: no entity under strict IOB2
    ["B-PER", "I-LOC", "O", "B-ORG"],                   # type switch inside an entity
    ["B-MISC", "I-MISC", "I-MISC", "O", "B-LOC"],       # multi-word entity
    ["B-LOC", "B-LOC", "I-LOC", "I-PER"],               # adjacent entities, a stray I-
])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # seqeval averages over zero entities
def test_predict_spans_are_the_entities_the_strict_metric_counts(tags):
    text = " ".join(f"w{i}" for i in range(len(tags)))
    spans = entity_spans(tags, split_words(text), text)
    expected, report = strict_entities(tags)
    assert [(s["type"], int(s["words"][0][1:]), int(s["words"][-1][1:])) for s in spans] == expected
    assert len(spans) == report["micro avg"]["support"]


def test_a_head_that_only_says_i_per_predicts_no_entity(model):
    """Lenient decoding (seqeval's get_entities) would return one PER span over every word."""
    head = model.heads["ner"]
    with torch.no_grad():
        head.classifier.weight.zero_()
        head.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(2), 9).float() * 10)  # I-PER
    [result] = model.predict(["Angela Merkel visited Paris"])
    assert result["ner"] == []


def test_a_word_without_subwords_is_not_counted_as_cut(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [result] = model.predict(["Paris \u00ad London"])  # the soft hyphen becomes no subword
    assert result["num_words"] == 3 and result["words_seen"] == 3


def test_a_sentence_of_exactly_max_length_is_not_truncated(encoder):
    text = "a b c d e f"  # [CLS] + 6 + [SEP] = 8 tokens
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = tokenize_sentences(encoder.tokenizer, [text], max_length=8)
    assert len(out["input_ids"][0]) == 8
    with pytest.warns(UserWarning, match="1 sentence"):
        tokenize_sentences(encoder.tokenizer, [text], max_length=7)


def test_model_config_round_trips_through_a_saved_model(tmp_path):
    config = ModelConfig(dropout=0.2, word_shape_dim=8, freeze="bottom:2", route="sentiment:3")
    model = MultiTaskModel.from_config(config, [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]])
    assert model.config == config
    model.save_pretrained(tmp_path / "m")
    loaded = MultiTaskModel.from_pretrained(tmp_path / "m")
    assert {k: v for k, v in vars(loaded.config).items() if k != "backbone"} == \
           {k: v for k, v in vars(config).items() if k != "backbone"}
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in model.parameters()]
    with pytest.raises(ValueError, match="unknown task kind 'pairs'"):
        TaskSpec("sts", "pairs", ("a", "b"))
