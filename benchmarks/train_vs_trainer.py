"""Training throughput on CoNLL-2003 NER: the mtl_utils loop (length-grouped batches, dynamic padding,
fused AdamW) vs Hugging Face `Trainer` on its defaults (random batches padded per batch by
DataCollatorForTokenClassification). Same model, data, batch size and number of steps.

    python benchmarks/train_vs_trainer.py [--steps 30 --repeats 3 --batch-size 32]
"""
from __future__ import annotations

import argparse
import tempfile

import torch
from datasets import Dataset
from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

from mtl_utils.data import load_conll2003
from mtl_utils.encoder import SentenceEncoder
from mtl_utils.llrd import llrd_parameter_groups
from mtl_utils.model import MultiTaskModel
from mtl_utils.sampling import length_grouped_batches
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import pad_batch, tokenize_split
from mtl_utils.training import make_adamw
from timing import median_seconds, report

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=32)
args = parser.parse_args()

spec = BUILTIN_TASKS["ner"]
encoder = SentenceEncoder.from_pretrained()
model = MultiTaskModel(encoder, [spec], word_shape_dim=0)  # plain token classification on both sides
features = tokenize_split(load_conll2003()["train"], spec, encoder.tokenizer)
keys = ["input_ids", "attention_mask", "labels"]
n = args.steps * args.batch_size


class TokenClassifier(torch.nn.Module):
    """What Trainer expects: forward(**batch) -> {"loss", "logits"}."""

    def __init__(self, inner: MultiTaskModel):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, labels=None):
        return self.inner("ner", input_ids=input_ids, attention_mask=attention_mask, labels=labels)


generator = torch.Generator().manual_seed(0)
lengths = [len(ids) for ids in features["input_ids"]]
ours_batches = [pad_batch([{k: features[k][i] for k in keys} for i in rows], encoder.tokenizer.pad_token_id)
                for rows in length_grouped_batches(lengths, args.batch_size, generator)[: args.steps]]
optimizer = make_adamw(llrd_parameter_groups(model, 2e-4, 2e-4, 1.0, 0.01), 2e-4)


def ours() -> None:
    model.train()
    for batch in ours_batches:
        model("ner", **batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


dataset = Dataset.from_dict({k: features[k] for k in keys})
output_dir = tempfile.mkdtemp()


def trainer() -> None:
    training_args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=args.batch_size,
                                      max_steps=args.steps, learning_rate=2e-4, weight_decay=0.01, save_strategy="no",
                                      report_to=[], logging_steps=10_000, disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    Trainer(model=TokenClassifier(model), args=training_args, train_dataset=dataset,
            data_collator=DataCollatorForTokenClassification(encoder.tokenizer)).train()


t_ours = median_seconds(ours, args.repeats)
t_trainer = median_seconds(trainer, args.repeats)
print(f"mtl_utils loop {n / t_ours:.1f} sentences/s; Trainer {n / t_trainer:.1f} sentences/s")
report({"train_vs_trainer_ratio": t_trainer / t_ours},
       {"ours_sentences_per_s": n / t_ours, "trainer_sentences_per_s": n / t_trainer, "steps": args.steps,
        "batch_size": args.batch_size, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
        "note": "Trainer's time includes its own set-up per train() call"})
