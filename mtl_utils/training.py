"""The multi-task training loop, every step visible: sample a task's batch, one forward, backward, step."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .checkpointing import load_training_state, save_training_state
from .evaluation import evaluate_task, stsb_spearman
from .feature_cache import CachedExamples, backbone_is_frozen, cache_head_inputs, pad_cached_batch
from .llrd import check_decay, llrd_parameter_groups
from .model import MultiTaskModel
from .sampling import MultiTaskBatchSampler, check_strategy
from .tokenization import pad_batch


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 2e-4  # top transformer layer
    head_lr: float = 1e-3
    llrd_decay: float = 0.9  # 1.0 = the same rate for every layer
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    sampler: str = "proportional"
    temperature: float = 2.0
    examples_per_epoch: dict[str, int] | None = None  # per task; None = every example every epoch
    seed: int = 42
    mixed_precision: str = "no"  # "bf16" or "fp16" on a GPU
    eval_batch_size: int = 128
    evaluate_every_epoch: bool = True  # False: only after the last epoch (cheap head-only epochs)
    cache_frozen_backbone: bool = True  # frozen backbone: encode the training set once (feature_cache.py)
    quiet: bool = False

    def __post_init__(self) -> None:
        check_decay(self.llrd_decay)
        check_strategy(self.sampler, self.temperature)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch size must be positive, got {self.epochs} and {self.batch_size}")


class TaskExamples(torch.utils.data.Dataset):
    """Pre-tokenised examples of several tasks, indexed by (task, row)."""

    def __init__(self, features: dict[str, dict[str, list]]):
        self.features = features
        self.keys = {task: [k for k in ("input_ids", "attention_mask", "word_shape_ids", "labels") if k in f]
                     for task, f in features.items()}

    def __len__(self) -> int:
        return sum(len(f["input_ids"]) for f in self.features.values())

    def __getitem__(self, index: tuple[str, int]) -> tuple[str, dict]:
        task, row = index
        return task, {k: self.features[task][k][row] for k in self.keys[task]}


def train(model: MultiTaskModel, train_features: dict[str, dict[str, list]],
          eval_sets: dict[str, tuple[Dataset, dict[str, list]]], config: TrainConfig,
          stsb_pairs: Dataset | None = None, output_dir: str | Path | None = None, resume: bool = False) -> dict:
    """Train on every task in `train_features`; evaluate on `eval_sets` (held-out) after each epoch.

    Returns the history (loss per step, metrics per epoch), also written to output_dir/history.json;
    a step's "lr" is that of the last parameter group (the last head); the others follow the same schedule.
    A frozen backbone runs in eval mode (no dropout) and, with `config.cache_frozen_backbone`, once:
    its features are cached before the first epoch (history["cache_seconds"]) and the heads train on them.
    With an output_dir, the full training state is checkpointed after each epoch; `resume=True`
    continues from the last complete checkpoint there, as if the run had never stopped.
    """
    set_seed(config.seed)
    accelerator = Accelerator(mixed_precision=config.mixed_precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    pad_id = model.encoder.tokenizer.pad_token_id
    sampler = MultiTaskBatchSampler({t: [len(ids) for ids in f["input_ids"]] for t, f in train_features.items()},
                                    config.batch_size, config.sampler, config.temperature, config.seed,
                                    config.examples_per_epoch)

    frozen_backbone = backbone_is_frozen(model)
    use_cache = frozen_backbone and config.cache_frozen_backbone
    if use_cache:
        start = time.perf_counter()
        dataset = CachedExamples({task: cache_head_inputs(model, task, f, config.eval_batch_size)
                                  for task, f in train_features.items()}, train_features)
        cache_seconds = time.perf_counter() - start
    else:
        dataset, cache_seconds = TaskExamples(train_features), 0.0

    def collate(items: list[tuple[str, dict]]) -> tuple[str, dict]:
        examples = [example for _, example in items]
        return items[0][0], pad_cached_batch(examples) if use_cache else pad_batch(examples, pad_id)

    loader = DataLoader(dataset, batch_sampler=_TupleBatches(sampler), collate_fn=collate)
    groups = llrd_parameter_groups(model, config.lr, config.head_lr, config.llrd_decay, config.weight_decay)
    optimizer = make_adamw(groups, config.lr)
    total_steps = config.epochs * len(sampler)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    trainable = [p for g in groups for p in g["params"]]

    history = {"config": asdict(config), "cached_features": use_cache, "cache_seconds": cache_seconds,
               "steps": [], "epochs": []}
    checkpoint_dir = Path(output_dir) / "checkpoint" if output_dir is not None else None
    step, first_epoch = 0, 0
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs the output_dir of the interrupted run")
        restored = load_training_state(checkpoint_dir, accelerator.unwrap_model(model), optimizer, scheduler)
        step, first_epoch, history = restored["step"], restored["epoch"], restored["history"]
    progress = tqdm(total=total_steps, initial=step, desc="train", disable=config.quiet or not accelerator.is_main_process)
    for epoch in range(first_epoch, config.epochs):
        # Accelerate's loader passes the epoch on to our sampler at every iteration (its own count of
        # iterations otherwise, which restarts at 0 after a resume), so the epoch is set there.
        loader.set_epoch(epoch)
        model.train()
        if frozen_backbone:
            accelerator.unwrap_model(model).encoder.eval()  # no dropout: the same features every epoch
        start, sentences = time.perf_counter(), 0
        for task, batch in loader:
            out = model(task, **batch)
            accelerator.backward(out["loss"])
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)  # None, not 0: AdamW then skips parameters a batch did not reach

            step += 1
            sentences += batch["labels"].shape[0]
            loss = out["loss"].item()
            history["steps"].append({"step": step, "epoch": epoch + 1, "task": task, "loss": loss,
                                     "lr": scheduler.get_last_lr()[-1]})
            progress.update(1)
            progress.set_postfix(task=task, loss=f"{loss:.3f}")
        train_seconds = time.perf_counter() - start

        unwrapped = accelerator.unwrap_model(model)
        record = {"epoch": epoch + 1, "train_seconds": train_seconds, "sentences_per_second": sentences / train_seconds}
        if config.evaluate_every_epoch or epoch + 1 == config.epochs:
            record["validation"] = {task: evaluate_task(unwrapped, task, split, feats, config.eval_batch_size)
                                    for task, (split, feats) in eval_sets.items()}
            if stsb_pairs is not None:
                record["stsb_spearman"] = stsb_spearman(unwrapped.encoder, stsb_pairs, config.eval_batch_size)
        history["epochs"].append(record)
        if not config.quiet and accelerator.is_main_process:
            progress.write(f"epoch {epoch + 1}: {summarize(record)}")
        if checkpoint_dir is not None and accelerator.is_main_process:
            save_training_state(checkpoint_dir, epoch + 1, step, unwrapped, optimizer, scheduler, history)
    progress.close()
    if output_dir is not None and accelerator.is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "history.json").write_text(json.dumps(history, indent=1))
    return history


def make_adamw(groups: list[dict], lr: float) -> torch.optim.AdamW:
    """torch's AdamW, fused into one kernel where this torch supports it for these parameters.

    The per-tensor loop, torch's default on CPU, is a large part of a training step for MiniLM's
    22.6M parameters (half of them in the word embeddings); the fused kernel is much cheaper.
    """
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


class _TupleBatches:
    """Adapts (task, rows) from the sampler to the (task, row) indices a DataLoader batch_sampler yields."""

    def __init__(self, sampler: MultiTaskBatchSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for task, rows in self.sampler:
            yield [(task, row) for row in rows]


def summarize(record: dict) -> str:
    """One line: the headline metric of each task (+ STS-B)."""
    parts = []
    for task, metrics in record.get("validation", record).items():
        if isinstance(metrics, dict) and "f1" in metrics:
            parts.append(f"{task} F1 {metrics['f1']:.4f}")
        elif isinstance(metrics, dict) and "accuracy" in metrics:
            parts.append(f"{task} acc {metrics['accuracy']:.4f}")
    if "stsb_spearman" in record:
        parts.append(f"STS-B {record['stsb_spearman']:.4f}")
    return ", ".join(parts)
