"""The training loop's own guarantees: nothing-to-train errors, where the feature cache is built,
what the optimizer holds, and learning rates that keep their layer-wise ratios through the schedule."""
import pytest
import torch
from accelerate import Accelerator, PartialState
from datasets import Dataset

from mtl_utils import precision, training
from mtl_utils.encoder import SentenceEncoder
from mtl_utils.freezing import apply_freezing
from mtl_utils.model import MultiTaskModel
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import tokenize_split
from mtl_utils.training import TrainConfig, train

from .helpers import NER_EXAMPLES, SENTIMENT_EXAMPLES

NER_TRAIN = Dataset.from_dict({"tokens": list(NER_EXAMPLES["tokens"]) * 8, "tags": list(NER_EXAMPLES["tags"]) * 8})
SENTIMENT_TRAIN = Dataset.from_dict({"text": list(SENTIMENT_EXAMPLES["text"]) * 8, "label": list(SENTIMENT_EXAMPLES["label"]) * 8})


def model_and_features(freeze: str = "none"):
    torch.manual_seed(0)
    model = MultiTaskModel(SentenceEncoder.from_pretrained(), [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]])
    apply_freezing(model, freeze)
    tokenizer = model.encoder.tokenizer
    return model, {"ner": tokenize_split(NER_TRAIN, BUILTIN_TASKS["ner"], tokenizer),
                   "sentiment": tokenize_split(SENTIMENT_TRAIN, BUILTIN_TASKS["sentiment"], tokenizer)}


def spy_optimizer(monkeypatch) -> list:
    """The optimizer train() builds, and the learning rate of each of its groups at every step."""
    made = []

    def make_adamw(groups, lr):
        optimizer = make(groups, lr)
        optimizer.lrs = []
        optimizer.register_step_post_hook(lambda opt, args, kwargs: opt.lrs.append([g["lr"] for g in opt.param_groups]))
        made.append(optimizer)
        return optimizer

    make = training.make_adamw
    monkeypatch.setattr(training, "make_adamw", make_adamw)
    return made


def test_nothing_to_train_is_a_clear_error_before_any_work(monkeypatch):
    model, features = model_and_features("all")
    encoded, encode = [], training.cache_head_inputs
    monkeypatch.setattr(training, "cache_head_inputs", lambda *args, **kwargs: encoded.append(args[1]) or encode(*args, **kwargs))
    with pytest.raises(ValueError, match="^freezing 'all' leaves no trainable parameter"):
        train(model, features, {}, TrainConfig(epochs=1, batch_size=4, quiet=True))
    assert encoded == []  # not a sentence encoded first

    model.heads["ner"].requires_grad_(True)  # the sentiment loss would still have no gradient
    with pytest.raises(ValueError, match="nothing trainable for 'sentiment'"):
        train(model, features, {}, TrainConfig(epochs=1, batch_size=4, quiet=True))
    assert encoded == []


def test_all_frozen_but_one_head_trains_that_head_alone(monkeypatch):
    model, features = model_and_features("all")
    model.heads["ner"].requires_grad_(True)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    made = spy_optimizer(monkeypatch)
    history = train(model, {"ner": features["ner"]}, {}, TrainConfig(epochs=1, batch_size=4, quiet=True))
    assert history["cached_features"] and len(history["steps"]) == 4
    held = [p for group in made[0].param_groups for p in group["params"]]
    assert len(held) == len({id(p) for p in held}) and {id(p) for p in held} == {id(p) for p in model.heads["ner"].parameters()}
    for name, p in model.named_parameters():
        if name.startswith("heads.ner."):
            assert not torch.equal(p, before[name]), name
        else:
            assert torch.equal(p, before[name]), name  # bitwise




def test_the_feature_cache_is_built_after_placement_under_autocast(monkeypatch):
    """A frozen backbone is encoded where and as training would run it: after accelerator.prepare has
    placed the model (on this CPU-only machine the device is the CPU either way: the order is what
    is checked), on the model's device, and under the run's mixed precision (bf16, forced: this CPU
    may lack fast bf16, and train() would then fall back to fp32)."""
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: True)
    model, features = model_and_features("backbone")
    events = []
    prepare = Accelerator.prepare

    def spy_prepare(self, *args, **kwargs):
        events.append(("prepare", any(a is model for a in args)))
        return prepare(self, *args, **kwargs)

    def spy_encode(module, args, kwargs):
        events.append(("encode", kwargs["input_ids"].device, next(module.parameters()).device,
                       torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu")))

    monkeypatch.setattr(Accelerator, "prepare", spy_prepare)
    model.encoder.backbone.register_forward_pre_hook(spy_encode, with_kwargs=True)
    history = train(model, features, {}, TrainConfig(epochs=1, batch_size=4, quiet=True, mixed_precision="bf16"))
    assert history["cached_features"]
    encodes = [i for i, e in enumerate(events) if e[0] == "encode"]
    assert len(encodes) == 2  # once per task (16 sentences each, one batch), never again in training
    assert events.index(("prepare", True)) < encodes[0]
    device = PartialState().device
    assert all(events[i][1:] == (device, device, torch.bfloat16) for i in encodes), events


def test_layer_wise_rates_keep_their_ratios_through_warm_up_and_decay(monkeypatch):
    model, features = model_and_features()
    made = spy_optimizer(monkeypatch)
    train(model, features, {}, TrainConfig(epochs=2, batch_size=4, quiet=True, warmup_ratio=0.25, llrd_decay=0.8))
    optimizer = made[0]
    base = [group["initial_lr"] for group in optimizer.param_groups]
    assert len(set(base)) == 8  # embeddings, 6 layers, heads: 8 different rates
    lrs = optimizer.lrs
    assert len(lrs) == 16  # 2 epochs x (4 + 4) batches; warm-up: 4 steps
    scale = [step[-1] / base[-1] for step in lrs]  # the schedule, as the heads' group followed it
    assert scale[:5] == sorted(scale[:5]) and scale[4:] == sorted(scale[4:], reverse=True) and scale[-1] < scale[4] / 4
    for step, factor in zip(lrs, scale):
        assert step == pytest.approx([b * factor for b in base], rel=1e-12, abs=0)


def test_one_training_step_moves_the_weights_and_a_nan_step_moves_nothing():
    """training_step is train()'s step (and the benchmarks'): a finite loss steps AdamW, a NaN one is
    reported back and leaves every weight and gradient as it was."""
    model, features = model_and_features()
    optimizer = training.make_adamw(training.llrd_parameter_groups(model, 1e-3, 1e-3), 1e-3)
    examples = [{k: features["sentiment"][k][i] for k in ("input_ids", "attention_mask", "labels")} for i in range(4)]
    batch = BUILTIN_TASKS["sentiment"].task_kind.collate(examples, model.encoder.tokenizer.pad_token_id)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = training.training_step(model, "sentiment", batch, optimizer, None, TrainConfig())
    assert "loss" in out and not torch.equal(model.heads["sentiment"].classifier.weight, before["heads.sentiment.classifier.weight"])
    moved = {n: p.detach().clone() for n, p in model.named_parameters()}
    nan = training.training_step(model, "sentiment", batch, optimizer, None, TrainConfig(),
                                 all_finite=lambda loss: False)
    assert set(nan) == {"skipped"} and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, moved[n]) for n, p in model.named_parameters())


def test_fp16_on_a_cpu_trains_in_fp32_with_one_line(caplog):
    with caplog.at_level("WARNING"):
        assert precision.resolve_mixed_precision("fp16", torch.device("cpu")) == "no"
    assert "fp16" in caplog.text and "training in fp32" in caplog.text
    assert precision.MixedPrecision("bf16").autocast().fast_dtype == torch.bfloat16
    assert not precision.MixedPrecision("no").scaler.is_enabled()
