"""A frozen backbone is encoded once; the heads then train on the cache: the same computation as on
re-encoded batches (a token task's labelled positions alone, so its head's dropout draws other masks)."""
import warnings

import torch
from datasets import Dataset

from mtl_utils.encoder import SentenceEncoder
from mtl_utils.feature_cache import backbone_is_frozen, cache_head_inputs
from mtl_utils.freezing import apply_freezing
from mtl_utils.model import MultiTaskModel
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import IGNORE_INDEX, pad_batch, tokenize_split
from mtl_utils.training import TrainConfig, train

from .helpers import NER_EXAMPLES, SENTIMENT_EXAMPLES

NER_TRAIN = Dataset.from_dict({"tokens": list(NER_EXAMPLES["tokens"]) * 6 + [["Paris", "is", "in", "France"]] * 4,
                               "tags": list(NER_EXAMPLES["tags"]) * 6 + [["B-LOC", "O", "O", "B-LOC"]] * 4})
SENTIMENT_TRAIN = Dataset.from_dict({"text": list(SENTIMENT_EXAMPLES["text"]) * 8, "label": list(SENTIMENT_EXAMPLES["label"]) * 8})


def frozen_model_and_data():
    torch.manual_seed(0)
    model = MultiTaskModel(SentenceEncoder.from_pretrained(), [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]])
    apply_freezing(model, "backbone")
    tokenizer = model.encoder.tokenizer
    features = {"ner": tokenize_split(NER_TRAIN, BUILTIN_TASKS["ner"], tokenizer),
                "sentiment": tokenize_split(SENTIMENT_TRAIN, BUILTIN_TASKS["sentiment"], tokenizer)}
    return model, features


# Words of several subwords, a word with no subword (a lone control character), a sentence with no
# labelled position at all, and one cut by max_length=8.
NER_EDGE_CASES = Dataset.from_dict({
    "tokens": list(NER_EXAMPLES["tokens"]) + [["Schwarzenegger", "\x00", "visited", "Kaliningrad"], ["\x00"],
                                              ["a", "b", "c", "d", "e", "f", "g", "Zurich"]],
    "tags": list(NER_EXAMPLES["tags"]) + [["B-PER", "O", "O", "B-LOC"], ["O"], ["O"] * 7 + ["B-LOC"]]})


def test_cached_inputs_are_what_the_heads_read(model):
    apply_freezing(model, "backbone")
    assert backbone_is_frozen(model)
    model.eval()
    tokenizer = model.encoder.tokenizer
    for task, split in (("ner", NER_EDGE_CASES), ("sentiment", SENTIMENT_EXAMPLES)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            features = tokenize_split(split, BUILTIN_TASKS[task], tokenizer, max_length=8)
        if task == "ner":  # the edge cases are there
            assert any("cut by max_length=8" in str(w.message) and "2 word(s) with no subword" in str(w.message)
                       for w in caught), [str(w.message) for w in caught]
            assert [sum(label != IGNORE_INDEX for label in labels) for labels in features["labels"]][-2] == 0
        keys = [k for k in ("input_ids", "attention_mask", "word_shape_ids", "labels") if k in features]
        examples = [{k: features[k][i] for k in keys} for i in range(len(split))]
        batch = pad_batch(examples, tokenizer.pad_token_id)
        kind = BUILTIN_TASKS[task].task_kind
        columns = [k for k in keys if k not in ("input_ids", "attention_mask")]
        cached_examples = [kind.cached_example(h, {k: torch.tensor(e[k]) for k in columns})
                           for e, h in zip(examples, cache_head_inputs(model, task, features, batch_size=1))]
        cached = kind.collate_cached(cached_examples)
        with torch.no_grad():
            direct = model(task, **batch)["logits"]
            from_cache = model(task, **cached)["logits"]
        if task == "ner":  # the cache keeps the labelled positions alone (each word's first subword), packed
            real = batch["labels"] != IGNORE_INDEX
            assert torch.equal(cached["labels"], batch["labels"][real])
            assert torch.equal(cached["word_shape_ids"], batch["word_shape_ids"][real])
            direct = direct[real]
        assert direct.shape == from_cache.shape
        assert torch.allclose(direct, from_cache, atol=1e-5)


def frozen_training(cache: bool, ner_dropout: float, sentiment_dropout: float = 0.1,
                    ner_dropout_inputs: list | None = None) -> tuple[dict, dict]:
    """Two epochs of the heads; `ner_dropout_inputs` collects the shape of every input the NER head's
    dropout draws a mask for."""
    model, features = frozen_model_and_data()
    model.heads["ner"].dropout.p, model.heads["sentiment"].dropout.p = ner_dropout, sentiment_dropout
    if ner_dropout_inputs is not None:
        model.heads["ner"].dropout.register_forward_hook(lambda _, args, out: ner_dropout_inputs.append(args[0].shape))
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    history = train(model, features, {}, TrainConfig(epochs=2, batch_size=4, seed=5, quiet=True, cache_frozen_backbone=cache))
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    assert history["cached_features"] == cache
    return history, {k: v.clone() for k, v in model.heads.state_dict().items()}


def test_training_on_the_cache_equals_training_on_reencoded_batches():
    # The token head without dropout: the same computation, step by step (with it, the token head draws
    # masks for the labelled rows alone when cached, for every padded position when not); the sentence
    # head's dropout draws the same masks either way.
    (cached, cached_heads), (reencoded, reencoded_heads) = (frozen_training(cache, ner_dropout=0.0)
                                                            for cache in (True, False))
    cached_losses = [s["loss"] for s in cached["steps"]]
    reencoded_losses = [s["loss"] for s in reencoded["steps"]]
    assert len(cached_losses) == len(reencoded_losses) > 0
    assert max(abs(a - b) for a, b in zip(cached_losses, reencoded_losses)) < 1e-4
    for name, value in cached_heads.items():
        assert torch.allclose(value, reencoded_heads[name], atol=1e-5), name
    sentences = lambda history: [round(e["sentences_per_second"] * e["train_seconds"]) for e in history["epochs"]]
    assert sentences(cached) == sentences(reencoded) == [len(NER_TRAIN) + len(SENTIMENT_TRAIN)] * 2


def test_the_cached_token_head_draws_dropout_masks_for_the_labelled_rows_alone():
    labelled = sum(label != IGNORE_INDEX for labels in frozen_model_and_data()[1]["ner"]["labels"] for label in labels)
    for cache in (True, False):
        shapes = []
        history, _ = frozen_training(cache, ner_dropout=0.1, ner_dropout_inputs=shapes)
        ner_steps = sum(s["task"] == "ner" for s in history["steps"])
        assert len(shapes) == ner_steps > 0
        if cache:  # rows of (hidden + word shape), one per labelled position, every example once per epoch
            assert all(len(shape) == 2 and shape[1] == 384 + 16 for shape in shapes)
            assert sum(shape[0] for shape in shapes) == 2 * labelled
        else:  # padded (batch, tokens, hidden + word shape): more rows than labelled positions
            assert all(len(shape) == 3 for shape in shapes)
            assert sum(shape[0] * shape[1] for shape in shapes) > 2 * labelled


def test_a_partly_trainable_backbone_is_not_cached():
    model, features = frozen_model_and_data()
    apply_freezing(model, "none,bottom:5")
    assert not backbone_is_frozen(model)
    history = train(model, features, {}, TrainConfig(epochs=1, batch_size=8, quiet=True))
    assert not history["cached_features"]
