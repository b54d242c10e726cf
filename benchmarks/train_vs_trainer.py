"""Training throughput on CoNLL-2003 NER: the mtl_utils loop (length-grouped batches, dynamic padding,
fused AdamW) vs Hugging Face `Trainer` on its defaults (random batches padded per batch by
DataCollatorForTokenClassification). Same model, data, batch size and number of steps.

    python benchmarks/train_vs_trainer.py [--steps 30 --repeats 3 --batch-size 32]
"""
from __future__ import annotations

import tempfile

import torch
from datasets import Dataset
from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

from mtl_utils.model import MultiTaskModel
from ner_training import grouped_batches, ner_setup, parse_arguments, train_steps
from timing import median_seconds, report

args = parse_arguments(__doc__.split("\n")[0])
encoder, model, optimizer, features = ner_setup(word_shape_dim=0)  # plain token classification on both sides
keys = ["input_ids", "attention_mask", "labels"]
n = args.steps * args.batch_size


class TokenClassifier(torch.nn.Module):
    """What Trainer expects: forward(**batch) -> {"loss", "logits"}."""

    def __init__(self, inner: MultiTaskModel):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, labels=None):
        return self.inner("ner", input_ids=input_ids, attention_mask=attention_mask, labels=labels)


ours_batches = grouped_batches(features, keys, args.batch_size, args.steps, encoder.tokenizer.pad_token_id)


dataset = Dataset.from_dict({k: features[k] for k in keys})
output_dir = tempfile.mkdtemp()


def trainer() -> None:
    training_args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=args.batch_size,
                                      max_steps=args.steps, learning_rate=2e-4, weight_decay=0.01, save_strategy="no",
                                      report_to=[], logging_steps=10_000, disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    Trainer(model=TokenClassifier(model), args=training_args, train_dataset=dataset,
            data_collator=DataCollatorForTokenClassification(encoder.tokenizer)).train()


t_ours = median_seconds(lambda: train_steps(model, optimizer, ours_batches), args.repeats)
t_trainer = median_seconds(trainer, args.repeats)
print(f"mtl_utils loop {n / t_ours:.1f} sentences/s; Trainer {n / t_trainer:.1f} sentences/s")
report({"train_vs_trainer_ratio": t_trainer / t_ours},
       {"ours_sentences_per_s": n / t_ours, "trainer_sentences_per_s": n / t_trainer, "steps": args.steps,
        "batch_size": args.batch_size, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
        "note": "Trainer's time includes its own set-up per train() call"})
