"""The multi-task training loop, every step visible: sample a task's batch, one forward, backward, step."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs, PartialState
from accelerate.utils import broadcast_object_list, gather_object, set_seed
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .checkpointing import capture_rng_state, load_training_state, save_training_state
from .evaluation import evaluate_task, stsb_spearman
from .feature_cache import CachedExamples, backbone_is_frozen, cache_head_inputs
from .llrd import check_decay, llrd_parameter_groups
from .model import MultiTaskModel
from .sampling import MultiTaskBatchSampler, check_strategy


def setting(default, help: str, **extra):
    """A dataclass field with the help text the CLI shows (train.py builds one option per field)."""
    return field(default=default, metadata={"help": help, **extra})


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
    examples_per_epoch: dict[str, int] | None = setting(
        None, "per-task examples per epoch, a new slice each epoch: N or TASK=N,...; 'all' = every example",
        cli_default="sentiment=22450")  # 3 x 22,450 covers SST-2's 67,349 once
    seed: int = setting(42, "seed of heads, dropout, sampling and subsets")
    mixed_precision: str = setting("no", "no, bf16 or fp16 (GPU)")
    eval_batch_size: int = setting(128, "sentences per evaluation batch")
    evaluate_every_epoch: bool = setting(True, "evaluate after every epoch (else only after the last)")
    cache_frozen_backbone: bool = setting(True, "frozen backbone: encode the training set once (feature_cache.py)")
    quiet: bool = setting(False, "no progress bars")

    def __post_init__(self) -> None:
        check_decay(self.llrd_decay)
        check_strategy(self.sampler, self.temperature)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch size must be positive, got {self.epochs} and {self.batch_size}")


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

    Returns the history (loss per step, metrics per epoch), also written to output_dir/history.json;
    a step's "lr" is that of the last parameter group (the last head); the others follow the same schedule.
    A frozen backbone runs in eval mode (no dropout) and, with `config.cache_frozen_backbone`, once:
    its features are cached before the first epoch (history["cache_seconds"]) and the heads train on them.
    With an output_dir, the full training state is checkpointed after each epoch; `resume=True`
    continues from the last complete checkpoint there, as if the run had never stopped.
    Several processes (torchrun, accelerate launch): each trains on its share of every epoch's batches
    (DDP); the main process alone evaluates, on the whole held-out sets, and writes files; every
    process returns the same history.
    """
    check_trainable(model, list(train_features))
    set_seed(config.seed)
    # find_unused_parameters: in one step, processes may run batches of different tasks (other heads,
    # routed layers without gradients); DDP then reduces zeros for the parameters a process did not use.
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=cpu_processes(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    pad_id = model.encoder.tokenizer.pad_token_id
    kinds = {task: model.tasks[task].task_kind for task in train_features}
    batch_keys = {task: kind.batch_keys for task, kind in kinds.items()}
    sampler = MultiTaskBatchSampler({t: [len(ids) for ids in f["input_ids"]] for t, f in train_features.items()},
                                    config.batch_size, config.sampler, config.temperature, config.seed,
                                    config.examples_per_epoch)

    frozen_backbone = backbone_is_frozen(model)
    use_cache = frozen_backbone and config.cache_frozen_backbone
    groups = llrd_parameter_groups(model, config.lr, config.head_lr, config.llrd_decay, config.weight_decay)
    optimizer = make_adamw(groups, config.lr)
    # N processes take N batches per step, and Accelerate's scheduler steps N times per step: so the
    # schedule is counted in the sampler's batches, whatever N is.
    total_steps = config.epochs * len(sampler)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    trainable = [p for g in groups for p in g["params"]]

    if use_cache:
        # After prepare: the frozen encoder runs on the accelerator's device and under its mixed
        # precision, as it would in training (every process caches the whole training set: which
        # batches a process gets changes every epoch).
        start = time.perf_counter()
        with accelerator.autocast():
            cache = {task: cache_head_inputs(accelerator.unwrap_model(model), task, f, config.eval_batch_size)
                     for task, f in train_features.items()}
        dataset = CachedExamples(cache, train_features, batch_keys)
        cache_seconds = time.perf_counter() - start
    else:
        dataset, cache_seconds = TaskExamples(train_features, batch_keys), 0.0

    def collate(items: list[tuple[str, dict]]) -> tuple[str, dict]:
        task, examples = items[0][0], [example for _, example in items]
        return task, kinds[task].collate_cached(examples) if use_cache else kinds[task].collate(examples, pad_id)

    # With several processes, Accelerate shards the batches: process i gets batches i, i + n, ... of
    # the sampler's epoch (the same schedule in every process, from the same seed), and every process
    # gets as many batches (the last ones repeated from the start if needed), so none waits forever.
    loader = accelerator.prepare(DataLoader(dataset, batch_sampler=_TupleBatches(sampler), collate_fn=collate))
    task_names = list(train_features)

    history = {"config": asdict(config), "cached_features": use_cache, "cache_seconds": cache_seconds,
               "steps": [], "epochs": []}
    checkpoint_dir = Path(output_dir) / "checkpoint" if output_dir is not None else None
    step, first_epoch = 0, 0
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs the output_dir of the interrupted run")
        restored = load_training_state(checkpoint_dir, accelerator.unwrap_model(model), optimizer, scheduler,
                                       process_index=accelerator.process_index)
        step, first_epoch, history = restored["step"], restored["epoch"], restored["history"]
    progress = tqdm(total=config.epochs * len(loader), initial=step, desc="train",
                    disable=config.quiet or not accelerator.is_main_process)
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
            loss, n_sentences = out["loss"].item(), batch["labels"].shape[0]
            entry = {"step": step, "epoch": epoch + 1, "task": task, "loss": loss, "lr": scheduler.get_last_lr()[-1]}
            if accelerator.num_processes > 1:
                # "task" and "loss" are this process's batch; every process's, main first, go in "tasks"
                # and "losses" (a step may mix tasks), and the throughput counts all of them.
                mine = torch.tensor([[task_names.index(task), loss, n_sentences]], dtype=torch.float64,
                                    device=accelerator.device)
                everyone = accelerator.gather(mine).tolist()
                entry["tasks"] = [task_names[int(t)] for t, _, _ in everyone]
                entry["losses"] = [value for _, value, _ in everyone]
                n_sentences = int(sum(n for _, _, n in everyone))
            sentences += n_sentences
            history["steps"].append(entry)
            progress.update(1)
            progress.set_postfix(task=task, loss=f"{loss:.3f}")
        train_seconds = time.perf_counter() - start

        unwrapped = accelerator.unwrap_model(model)
        record = {"epoch": epoch + 1, "train_seconds": train_seconds, "sentences_per_second": sentences / train_seconds}
        # Evaluation: once, by the main process, on the whole held-out sets (not one shard per process:
        # after the step every process holds the same weights, so N evaluations would give the same
        # numbers N times). The others wait in the broadcast, which then gives every process's history
        # the main process's record.
        if accelerator.is_main_process and (config.evaluate_every_epoch or epoch + 1 == config.epochs):
            record["validation"] = {task: evaluate_task(unwrapped, task, split, feats, config.eval_batch_size)
                                    for task, (split, feats) in eval_sets.items()}
            if stsb_pairs is not None:
                record["stsb_spearman"] = stsb_spearman(unwrapped.encoder, stsb_pairs, config.eval_batch_size)
        record = broadcast_object_list([record])[0]
        history["epochs"].append(record)
        if not config.quiet and accelerator.is_main_process:
            progress.write(f"epoch {epoch + 1}: {summarize(record, unwrapped.tasks)}")
        if checkpoint_dir is not None:
            # Every process's random state (each one's dropout has drawn differently), gathered; the
            # main process alone writes, and no process starts the next epoch before it is on disk.
            rng_states = gather_object([capture_rng_state()])
            if accelerator.is_main_process:
                save_training_state(checkpoint_dir, epoch + 1, step, unwrapped, optimizer, scheduler, history,
                                    rng_states)
            accelerator.wait_for_everyone()
    progress.close()
    if output_dir is not None and accelerator.is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "history.json").write_text(json.dumps(history, indent=1))
    accelerator.wait_for_everyone()
    return history


def cpu_processes() -> bool:
    """True for several processes (torchrun, `accelerate launch`) on a machine without a GPU.

    Accelerate sets up distributed training on CPUs (gloo) only when told `cpu=True`; without it,
    each process would train alone, unaware of the others, and all would write the same files.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if hasattr(torch, "accelerator"):  # torch >= 2.6; MPS has no multi-process backend
        return not torch.accelerator.is_available() or torch.accelerator.current_accelerator().type == "mps"
    return not torch.cuda.is_available()


def distributed_state() -> PartialState:
    """This process's place in a (possibly) distributed run: the state train()'s Accelerator will share."""
    return PartialState(cpu=cpu_processes())


def check_trainable(model: MultiTaskModel, tasks: list[str] | None = None) -> None:
    """A clear error, before any work, when freezing has left nothing to train (AdamW would fail inside
    torch), or nothing for one of `tasks` (its loss would have no gradient: its head and the whole
    encoder are frozen)."""
    scenario = getattr(model, "freeze", None) or "every parameter"
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"freezing {scenario!r} leaves no trainable parameter: nothing to "
                         "train (freeze 'backbone' to train the heads alone, or unfreeze a head)")
    if not any(p.requires_grad for p in model.encoder.parameters()):
        idle = [t for t in tasks or [] if not any(p.requires_grad for p in model.heads[t].parameters())]
        if idle:
            raise ValueError(f"freezing {scenario!r} leaves nothing trainable for {', '.join(map(repr, idle))} "
                             "(its head and the encoder are frozen): leave it out of the training tasks")


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


def summarize(record: dict, tasks: dict) -> str:
    """One line: the headline metric of each task (its kind's, e.g. f1 or accuracy) (+ STS-B)."""
    parts = [f"{task} {tasks[task].task_kind.headline} {metrics[tasks[task].task_kind.headline]:.4f}"
             for task, metrics in record.get("validation", record).items() if task in tasks]
    if "stsb_spearman" in record:
        parts.append(f"STS-B {record['stsb_spearman']:.4f}")
    return ", ".join(parts)
