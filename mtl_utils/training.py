"""The multi-task training loop, every step visible: sample a task's batch, one forward, backward, step.

`train()` reads top to bottom: set-up, then per epoch a loop of `training_step` and a few one-line
calls into modules named after what they do: checkpointing, nonfinite, distributed, precision.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate.utils import set_seed
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .checkpointing import Checkpointer, Position
from .distillation import check_distillation, embedding_distance, teacher_vectors
from .distributed import batch_loader, everyones_step, from_main, make_accelerator
from .evaluation import evaluate_task, stsb_spearman
from .feature_cache import CachedExamples, backbone_is_frozen, cache_head_inputs
from .llrd import check_decay, llrd_parameter_groups
from .model import MultiTaskModel
from .nonfinite import NonFiniteGuard
from .precision import MixedPrecision, check_mixed_precision, resolve_mixed_precision
from .sampling import MultiTaskBatchSampler, check_strategy
from .settings import setting


@dataclass
class TrainConfig:
    """The training settings, shared by the CLI (one option each), the notebooks and history.json."""

    epochs: int = setting(3, "passes over the training data")
    batch_size: int = setting(32, "sentences per batch (every batch holds one task)")
    lr: float = setting(2e-4, "learning rate of the top transformer layer")
    head_lr: float = setting(1e-3, "learning rate of the task heads")
    llrd_decay: float = setting(0.9, "learning-rate factor per layer down (1 = the same rate for every layer)")
    weight_decay: float = setting(0.01, "AdamW weight decay (none on biases and LayerNorm)")
    warmup_ratio: float = setting(0.06, "share of the steps with linear warm-up (then linear decay)")
    max_grad_norm: float = setting(1.0, "gradient clipping (0 = off)")
    sampler: str = setting("proportional", "task schedule: proportional, temperature or round_robin")
    temperature: float = setting(2.0, "temperature of the 'temperature' schedule")
    examples_per_epoch: dict[str, int] | None = setting(  # 3 x 22,450 covers SST-2's 67,349 once
        None, "per-task examples per epoch (a new slice each time): N or TASK=N,...", cli_default="sentiment=22450")
    seed: int = setting(42, "seed of heads, dropout, sampling and subsets")
    # The library stays fp32, so that the notebooks and tests give the same numbers on every machine.
    mixed_precision: str = setting("no", "no, bf16 (GPUs from Ampere on; CPUs with bf16 units, else fp32), fp16 "
                                         "(GPU) or auto (bf16 where fast, else no)", cli_default="auto")
    eval_batch_size: int = setting(128, "sentences per evaluation batch")
    evaluate_every_epoch: bool = setting(True, "evaluate after every epoch (else only after the last)")
    cache_frozen_backbone: bool = setting(True, "frozen backbone: encode the training set once (feature_cache.py)")
    checkpoint_every: int = setting(100, "with an output dir: also checkpoint every N steps inside an epoch "
                                         "(0 = only after each epoch)")  # why 100: README, Resume
    keep_checkpoints: int = setting(1, "checkpoints kept in <output-dir>/checkpoint (the latest K)")
    skip_nonfinite: bool = setting(False, "skip a batch whose loss is NaN or infinite (recorded in history) "
                                          "instead of stopping")
    keep_embeddings: float = setting(0.0, "distillation weight lambda: pull every training sentence's pooled "
                                          "vector towards the one the encoder gave before training (0 = off)")
    keep_distance: str = setting("cosine", "distillation distance: cosine (1 - cos) or mse")
    quiet: bool = setting(False, "no progress bars")

    def __post_init__(self) -> None:
        check_decay(self.llrd_decay)
        check_strategy(self.sampler, self.temperature)
        check_distillation(self.keep_embeddings, self.keep_distance)
        check_mixed_precision(self.mixed_precision)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch size must be positive, got {self.epochs} and {self.batch_size}")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ValueError(f"checkpoint every {self.checkpoint_every} steps (>= 0, 0 = at epoch ends only) and "
                             f"keep {self.keep_checkpoints} checkpoints (>= 1): out of range")


class TaskExamples(torch.utils.data.Dataset):
    """Pre-tokenised examples of several tasks, indexed by (task, row)."""

    def __init__(self, features: dict[str, dict[str, list]], batch_keys: dict[str, tuple[str, ...]]):
        self.features = features
        self.keys = {task: [k for k in batch_keys[task] if k in f] for task, f in features.items()}

    def __len__(self) -> int:
        return sum(len(f["input_ids"]) for f in self.features.values())

    def __getitem__(self, index: tuple[str, int]) -> tuple[str, dict]:
        task, row = index
        return task, {k: self.features[task][k][row] for k in self.keys[task]}


def train(model: MultiTaskModel, train_features: dict[str, dict[str, list]],
          eval_sets: dict[str, tuple[Dataset, dict[str, list]]], config: TrainConfig,
          stsb_pairs: Dataset | None = None, output_dir: str | Path | None = None, resume: bool = False) -> dict:
    """Train on every task in `train_features`; evaluate on `eval_sets` (held-out) after each epoch.
    Returns the history (per step: loss and the last group's lr; per epoch: metrics), also written to
    output_dir/history.json, where checkpoints go too; `resume=True` continues from the last one as if
    the run had never stopped. Several processes (DDP) share each epoch's batches; the main one alone
    evaluates and writes."""
    check_trainable(model, list(train_features))
    set_seed(config.seed)
    accelerator = make_accelerator()
    precision = MixedPrecision(resolve_mixed_precision(config.mixed_precision, accelerator.device), accelerator.device)
    sampler = MultiTaskBatchSampler({t: [len(ids) for ids in f["input_ids"]] for t, f in train_features.items()},
                                    config.batch_size, config.sampler, config.temperature, config.seed,
                                    config.examples_per_epoch)
    optimizer = make_adamw(llrd_parameter_groups(model, config.lr, config.head_lr, config.llrd_decay,
                                                 config.weight_decay), config.lr)
    # Counted in the sampler's batches whatever the number of processes N: Accelerate's scheduler steps
    # N times per step, and N processes take N batches per step.
    total_steps = config.epochs * len(sampler)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    plain = accelerator.unwrap_model(model)  # the model itself (DDP wraps it with several processes)
    data = TrainingData(plain, train_features, config, precision)  # after placement: encoded where it trains
    loader = batch_loader(accelerator, data.dataset, sampler, data.collate)
    checkpoints = Checkpointer(output_dir, accelerator, model, optimizer, scheduler, config.checkpoint_every,
                               config.keep_checkpoints)
    position, history = checkpoints.resume() if resume else (Position(), data.new_history(precision.precision))
    guard = NonFiniteGuard(accelerator, config.skip_nonfinite, train_features, plain.encoder.tokenizer,
                           checkpoints.directory)
    progress = tqdm(total=config.epochs * len(loader), initial=position.step, desc="train",
                    disable=config.quiet or not accelerator.is_main_process)
    for epoch in range(position.epoch, config.epochs):
        loader.set_epoch(epoch)  # (Accelerate's own count restarts at 0 after a resume)
        data.train_mode(model, plain)
        batches = iter(loader)
        position.begin_epoch(batches, accelerator.num_processes)
        for task, batch, rows in batches:
            out = training_step(model, task, batch, optimizer, scheduler, config, data.teachers_of(task, rows),
                                precision, guard.all_finite)
            position.step, position.epoch_step = position.step + 1, position.epoch_step + 1
            if "skipped" in out:  # not finite: stop before the step (NonFiniteLossError), or skip it
                guard.handle(position, task, rows, out["skipped"], history, progress)
            else:
                position.sentences += log_step(history, out, task, rows, position, scheduler, accelerator, data.tasks)
                progress.set_postfix(task=task, loss=f"{history['steps'][-1]['loss']:.3f}")
            progress.update(1)
            checkpoints.maybe_save(position, history, len(loader))
        record = end_of_epoch(plain, position, epoch, eval_sets, stsb_pairs, config, accelerator)
        history["epochs"].append(record)
        if not progress.disable:
            progress.write(f"epoch {epoch + 1}: {summarize(record, plain.tasks)}")
        position.epoch += 1
        checkpoints.save_epoch(position, history)
    progress.close()
    if output_dir is not None and accelerator.is_main_process:  # (the checkpoints have made the folder)
        (Path(output_dir) / "history.json").write_text(json.dumps(history, indent=1))
    accelerator.wait_for_everyone()
    return history


def training_step(model: torch.nn.Module, task: str, batch: dict[str, torch.Tensor], optimizer, scheduler,
                  config: TrainConfig, teacher: torch.Tensor | None = None,
                  precision: MixedPrecision | None = None, all_finite=lambda loss: bool(torch.isfinite(loss).all())
                  ) -> dict[str, torch.Tensor]:
    """One step on one task's batch: forward (under autocast), the task loss (+ lambda x the distance to
    the teacher's sentence vectors, distillation.py), backward, clip, AdamW, schedule. Returns the
    forward's outputs with "loss" (and "keep"); {"skipped": objective} if it was not finite anywhere."""
    precision = precision or MixedPrecision()
    with precision.autocast():
        out = model(task, **batch, sentence_vectors=teacher is not None)
    objective = out["loss"]
    if teacher is not None:  # stay near the encoder's starting sentence vectors
        out["keep"] = embedding_distance(out["sentence_vectors"], teacher, config.keep_distance)
        objective = objective + config.keep_embeddings * out["keep"]
    finite = all_finite(objective)
    if finite:
        precision.scaler.scale(objective).backward()
        if config.max_grad_norm:
            precision.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                           config.max_grad_norm)
        precision.scaler.step(optimizer)
        precision.scaler.update()
        if scheduler is not None:
            scheduler.step()
    optimizer.zero_grad(set_to_none=True)  # None, not 0: AdamW then skips parameters a batch did not reach
    return out if finite else {"skipped": objective}


class TrainingData:
    """What batches are made of: tokenised examples, or a frozen backbone's cached features
    (feature_cache.py); with distillation, the teacher's sentence vectors (distillation.py)."""

    def __init__(self, model: MultiTaskModel, features: dict[str, dict[str, list]], config: TrainConfig,
                 precision: MixedPrecision):
        self.tasks, self.kinds = list(features), {task: model.tasks[task].task_kind for task in features}
        self.pad_id, self.frozen = model.encoder.tokenizer.pad_token_id, backbone_is_frozen(model)
        self.cached, batch = self.frozen and config.cache_frozen_backbone, config.eval_batch_size
        self.config, self.cache_seconds, self.teacher_seconds, self.teachers = config, 0.0, 0.0, None
        start = time.perf_counter()
        if self.cached:  # every process caches the whole training set: its batches change every epoch
            with precision.autocast():
                cache = {task: cache_head_inputs(model, task, f, batch) for task, f in features.items()}
            self.dataset = CachedExamples(cache, features, self.kinds)  # keeps what the heads read
            self.cache_seconds = time.perf_counter() - start
        else:
            self.dataset = TaskExamples(features, {t: k.batch_keys for t, k in self.kinds.items()})
        if config.keep_embeddings:  # the encoder's vectors now, once, before any step
            if self.frozen:
                raise ValueError("keep_embeddings: the encoder is frozen, so its vectors cannot drift; set it to 0")
            start = time.perf_counter()
            with precision.autocast():
                self.teachers = {task: teacher_vectors(model, f, batch) for task, f in features.items()}
            self.teacher_seconds = time.perf_counter() - start

    def collate(self, task: str, examples: list[dict]) -> dict[str, torch.Tensor]:
        kind = self.kinds[task]
        return kind.collate_cached(examples) if self.cached else kind.collate(examples, self.pad_id)

    def teachers_of(self, task: str, rows: list[int]) -> torch.Tensor | None:
        return None if self.teachers is None else self.teachers[task][rows]

    def train_mode(self, model: torch.nn.Module, plain: MultiTaskModel) -> None:
        model.train()
        plain.encoder.train(not self.frozen)  # a frozen encoder without dropout: the same features every epoch

    def new_history(self, mixed_precision: str) -> dict:
        return {"config": asdict(self.config), "mixed_precision": mixed_precision, "cached_features": self.cached,
                "cache_seconds": self.cache_seconds, "teacher_seconds": self.teacher_seconds,
                "steps": [], "epochs": [], "skipped_nonfinite": []}


def log_step(history: dict, out: dict, task: str, rows: list[int], position: Position, scheduler,
             accelerator, task_names: list[str]) -> int:
    """Log the step ("loss": the task's alone, "keep": distillation's); returns every process's sentences."""
    entry = {"step": position.step, "epoch": position.epoch + 1, "task": task, "loss": out["loss"].item(),
             "lr": scheduler.get_last_lr()[-1]}
    if "keep" in out:
        entry["keep"] = out["keep"].item()
    n_sentences = everyones_step(accelerator, entry, task_names, len(rows))
    history["steps"].append(entry)
    return n_sentences


def end_of_epoch(model: MultiTaskModel, position: Position, epoch: int, eval_sets: dict, stsb_pairs: Dataset | None,
                 config: TrainConfig, accelerator) -> dict:
    """The epoch's time, throughput and held-out metrics (by the main process, on the whole sets)."""
    seconds = time.perf_counter() - position.started
    record = {"epoch": epoch + 1, "train_seconds": seconds, "sentences_per_second": position.sentences / seconds}
    if config.evaluate_every_epoch or epoch + 1 == config.epochs:
        def evaluate() -> dict:
            scores = {"validation": {task: evaluate_task(model, task, split, feats, config.eval_batch_size)
                                     for task, (split, feats) in eval_sets.items()}}
            if stsb_pairs is not None:
                scores["stsb_spearman"] = stsb_spearman(model.encoder, stsb_pairs, config.eval_batch_size)
            return scores
        record.update(from_main(accelerator, evaluate))
    return record


def check_trainable(model: MultiTaskModel, tasks: list[str] | None = None) -> None:
    """A clear error, before any work, when freezing leaves nothing to train, or nothing for one of `tasks`."""
    scenario = getattr(model, "freeze", None) or "every parameter"
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"freezing {scenario!r} leaves no trainable parameter: nothing to "
                         "train (freeze 'backbone' to train the heads alone, or unfreeze a head)")
    if backbone_is_frozen(model):
        idle = [t for t in tasks or [] if not any(p.requires_grad for p in model.heads[t].parameters())]
        if idle:
            raise ValueError(f"freezing {scenario!r} leaves nothing trainable for {', '.join(map(repr, idle))} "
                             "(its head and the encoder are frozen): leave it out of the training tasks")


def make_adamw(groups: list[dict], lr: float) -> torch.optim.AdamW:
    """torch's AdamW, fused into one kernel where this torch can: its per-tensor loop, the CPU default,
    is a large part of a step for MiniLM's 22.6M parameters (half of them word embeddings)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


def summarize(record: dict, tasks: dict) -> str:
    """One line: the headline metric of each task (its kind's, e.g. f1 or accuracy) (+ STS-B)."""
    parts = [f"{task} {tasks[task].task_kind.headline} {metrics[tasks[task].task_kind.headline]:.4f}"
             for task, metrics in record.get("validation", record).items() if task in tasks]
    if "stsb_spearman" in record:
        parts.append(f"STS-B {record['stsb_spearman']:.4f}")
    return ", ".join(parts)
