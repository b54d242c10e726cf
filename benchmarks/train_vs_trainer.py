"""Training throughput on CoNLL-2003 NER, like for like: `mtl_utils.training.train` (the real loop:
loader, collation, clipping, warm-up and decay, fused AdamW, length-grouped batches) against Hugging
Face `Trainer` in its best configuration for this job (`train_sampling_strategy="group_by_length"`,
`optim="adamw_torch_fused"`, the same batch size, clipping, schedule and weight decay), and, for
reference, `Trainer` on its defaults (random batches). Every arm is one whole call (its set-up
included: ours builds its Accelerator, sampler and optimizer, Trainer its own) over the same sentences
for one epoch; the arms alternate in one process, median of the repeats after one warm-up round.

    python benchmarks/train_vs_trainer.py [--steps 30 --repeats 3 --batch-size 32]
"""
from __future__ import annotations

import statistics
import tempfile
import time

import torch
from datasets import Dataset
from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

from mtl_utils.model import MultiTaskModel
from mtl_utils.training import TrainConfig, train
from ner_training import ner_setup, parse_arguments
from timing import machine, report

args = parse_arguments(__doc__.split("\n")[0])
encoder, model, _, features = ner_setup(word_shape_dim=0)  # plain token classification on both sides
n = args.steps * args.batch_size
keys = ["input_ids", "attention_mask", "labels"]
rows = torch.randperm(len(features["input_ids"]), generator=torch.Generator().manual_seed(0))[:n].tolist()
sample = {k: [features[k][i] for i in rows] for k in features}
dataset = Dataset.from_dict({k: sample[k] for k in keys})
output_dir = tempfile.mkdtemp()
LR, WEIGHT_DECAY, WARMUP, CLIP = 2e-4, 0.01, 0.06, 1.0  # WARMUP: a share of the steps, as Trainer's warmup_steps < 1


class TokenClassifier(torch.nn.Module):
    """What Trainer expects: forward(**batch) -> {"loss", "logits"}."""

    def __init__(self, inner: MultiTaskModel):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, labels=None):
        return self.inner("ner", input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def ours() -> None:
    config = TrainConfig(epochs=1, batch_size=args.batch_size, lr=LR, weight_decay=WEIGHT_DECAY, warmup_ratio=WARMUP,
                         max_grad_norm=CLIP, quiet=True, evaluate_every_epoch=False)
    history = train(model, {"ner": sample}, {}, config)
    assert len(history["steps"]) == args.steps


def trainer(best: bool) -> None:
    # Trainer on its defaults (this torch: fused AdamW already; random batches) or with its length grouping
    # Trainer's defaults here: random batches, and fused AdamW (its default from torch 2.8 on); at its best,
    # length-grouped batches (LengthGroupedSampler) with the fused AdamW named explicitly
    tuned = {"train_sampling_strategy": "group_by_length", "optim": "adamw_torch_fused"} if best else {}
    training_args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=args.batch_size, num_train_epochs=1, learning_rate=LR,
        weight_decay=WEIGHT_DECAY, warmup_steps=WARMUP, max_grad_norm=CLIP, lr_scheduler_type="linear",
        save_strategy="no", eval_strategy="no", report_to=[], logging_steps=10_000, disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(), **tuned)
    result = Trainer(model=TokenClassifier(model), args=training_args, train_dataset=dataset,
                     data_collator=DataCollatorForTokenClassification(encoder.tokenizer)).train()
    assert result.global_step == args.steps


arms = {"ours": ours, "trainer_best": lambda: trainer(True), "trainer_defaults": lambda: trainer(False)}
times = {name: [] for name in arms}
for round_ in range(args.repeats + 1):  # round 0: warm-up, not counted
    for name, arm in arms.items():
        start = time.perf_counter()
        arm()
        if round_:
            times[name].append(time.perf_counter() - start)
seconds = {name: statistics.median(t) for name, t in times.items()}
speed = {name: n / s for name, s in seconds.items()}
print(", ".join(f"{name} {value:.1f} sentences/s" for name, value in speed.items()))
report({"train_vs_trainer_ratio": seconds["trainer_best"] / seconds["ours"]},
       {"ours_sentences_per_s": speed["ours"], "trainer_sentences_per_s": speed["trainer_best"],
        "trainer_defaults_sentences_per_s": speed["trainer_defaults"],
        "trainer_defaults_ratio": seconds["trainer_defaults"] / seconds["ours"],
        "seconds_per_repeat": times, "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats,
        **machine(),
        "note": "each arm one whole call with its set-up, over the same sentences, same clipping, schedule, "
                "weight decay and batch size; Trainer's best: group_by_length + adamw_torch_fused; "
                "ours adds layer-wise learning rates (no extra cost per step)"})
