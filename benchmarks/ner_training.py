"""Shared by the training benchmarks: arguments, the NER model and data, and the mtl_utils training steps."""
from __future__ import annotations

import argparse

import torch

from mtl_utils.data import load_conll2003
from mtl_utils.encoder import SentenceEncoder
from mtl_utils.llrd import llrd_parameter_groups
from mtl_utils.model import MultiTaskModel
from mtl_utils.sampling import length_grouped_batches
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import pad_batch, tokenize_split
from mtl_utils.training import TrainConfig, make_adamw, training_step


def parse_arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    return parser.parse_args()


def ner_setup(word_shape_dim: int = 16, max_length: int = 256):
    """(encoder, model, optimizer, tokenised CoNLL-2003 training features) as `python -m mtl_utils.train` builds them."""
    spec = BUILTIN_TASKS["ner"]
    encoder = SentenceEncoder.from_pretrained()
    model = MultiTaskModel(encoder, [spec], word_shape_dim=word_shape_dim)
    optimizer = make_adamw(llrd_parameter_groups(model, 2e-4, 1e-3, 0.9, 0.01), 2e-4)
    features = tokenize_split(load_conll2003()["train"], spec, encoder.tokenizer, max_length=max_length)
    return encoder, model, optimizer, features


def grouped_batches(features: dict, keys: list[str], batch_size: int, steps: int, pad_token_id: int) -> list[dict]:
    """The first `steps` length-grouped, dynamically padded batches of one shuffle."""
    lengths = [len(ids) for ids in features["input_ids"]]
    rows = length_grouped_batches(lengths, batch_size, torch.Generator().manual_seed(0))[:steps]
    return [pad_batch([{k: features[k][i] for k in keys} for i in batch], pad_token_id) for batch in rows]


NO_CLIPPING = TrainConfig(max_grad_norm=0.0)  # what these benchmarks have always timed


def train_steps(model: MultiTaskModel, optimizer: torch.optim.Optimizer, batches: list[dict]) -> None:
    """mtl_utils' training step (`training.training_step`, the one train() runs) on each batch: forward,
    backward, AdamW, gradients to None (no scheduler, no clipping)."""
    model.train()
    for batch in batches:
        training_step(model, "ner", batch, optimizer, None, NO_CLIPPING)
