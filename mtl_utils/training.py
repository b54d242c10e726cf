"""The multi-task training loop, every step visible: sample a task's batch, one forward, backward, step."""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast_object_list, gather_object, set_seed
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .checkpointing import (capture_rng_state, kept_checkpoints, load_training_state, restore_rng_state,
                            save_training_state)
from .distillation import check_distillation, embedding_distance, teacher_vectors
from .evaluation import evaluate_task, stsb_spearman
from .feature_cache import CachedExamples, backbone_is_frozen, cache_head_inputs
from .llrd import check_decay, llrd_parameter_groups
from .model import MultiTaskModel
from .precision import check_mixed_precision, plain_forward, resolve_mixed_precision
from .sampling import MultiTaskBatchSampler, check_strategy
from .serialization import CheckpointError


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
    # The CLI's auto: bf16 scored within noise of fp32 and took 15.0 min against 19.7 (README); the
    # library stays fp32, so that the notebooks and tests give the same numbers on every CPU.
    mixed_precision: str = setting("no", "no, bf16 (GPUs from Ampere on; CPUs with bf16 units, else fp32 "
                                         "with a warning), fp16 (GPU) or auto (bf16 where fast, else no)",
                                   cli_default="auto")
    eval_batch_size: int = setting(128, "sentences per evaluation batch")
    evaluate_every_epoch: bool = setting(True, "evaluate after every epoch (else only after the last)")
    cache_frozen_backbone: bool = setting(True, "frozen backbone: encode the training set once (feature_cache.py)")
    # A kill should cost the default run (3 epochs of ~1,140 steps) at most ~2 minutes of work. Its
    # steps take 0.32 s here (results/default/history.json: 3,423 steps in 1,086 s) and up to ~0.95 s on
    # a slower or busy machine: 120 s / 0.95 s = ~126 steps. Every 100 steps loses <= 32-95 s. A
    # checkpoint (MiniLM's weights + AdamW moments, ~260 MB) takes 0.2-1 s: 34 in the run, ~1-3% of it.
    checkpoint_every: int = setting(100, "with an output dir: also checkpoint every N steps inside an epoch "
                                         "(0 = only after each epoch)")
    keep_checkpoints: int = setting(1, "checkpoints kept in <output-dir>/checkpoint (the latest K)")
    skip_nonfinite: bool = setting(False, "skip a batch whose loss is NaN or infinite (no optimizer step; counted "
                                          "in history['skipped_nonfinite']) instead of stopping")
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


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss: training stopped before that step, so the last checkpoint is a good one."""


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
    With an output_dir, the state is checkpointed every `config.checkpoint_every` steps and after each
    epoch; `resume=True` continues from the last complete checkpoint as if the run had never stopped.
    Also: a frozen backbone in eval mode, its features cached once (feature_cache.py); a NaN loss stops
    the run (NonFiniteLossError) or is skipped; mixed precision for the training steps only
    (precision.py); several processes share each epoch's batches (DDP), the main one alone evaluating
    (on the whole held-out sets) and writing; all return the same history.
    """
    check_trainable(model, list(train_features))
    set_seed(config.seed)
    mixed_precision = resolve_mixed_precision(config.mixed_precision, distributed_state().device)
    if AcceleratorState._shared_state.get("_mixed_precision") not in (None, mixed_precision):
        # Accelerate keeps one precision per process and refuses another, so a notebook could not
        # train in bf16 and then in fp32; its process state (ranks, device) is kept.
        AcceleratorState._reset_state()
    # find_unused_parameters: in one step, processes may run batches of different tasks (other heads,
    # routed layers without gradients); DDP then reduces zeros for the parameters a process did not use.
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu_processes(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    pad_id = model.encoder.tokenizer.pad_token_id
    kinds = {task: model.tasks[task].task_kind for task in train_features}
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
        dataset = CachedExamples(cache, train_features, kinds)
        del cache  # the dataset keeps what the heads read (of a token task, its labelled positions alone)
        cache_seconds = time.perf_counter() - start
    else:
        dataset, cache_seconds = TaskExamples(train_features, {t: k.batch_keys for t, k in kinds.items()}), 0.0
    teachers, teacher_seconds = None, 0.0
    if config.keep_embeddings:  # distillation.py: the encoder's vectors now, once, before any step
        if frozen_backbone:
            raise ValueError("keep_embeddings: the encoder is frozen, so its vectors cannot drift; set it to 0")
        start = time.perf_counter()
        with accelerator.autocast():
            teachers = {task: teacher_vectors(accelerator.unwrap_model(model), f, config.eval_batch_size)
                        for task, f in train_features.items()}
        teacher_seconds = time.perf_counter() - start

    def collate(items: list[tuple[int, tuple[str, dict]]]) -> tuple[str, dict, list[int]]:
        task, examples = items[0][1][0], [example for _, (_, example) in items]
        batch = kinds[task].collate_cached(examples) if use_cache else kinds[task].collate(examples, pad_id)
        if teachers is not None:
            batch["teacher"] = teachers[task][[row for row, _ in items]]
        return task, batch, [row for row, _ in items]  # the rows: to name a batch whose loss is not finite

    # With several processes, Accelerate shards the batches: process i gets batches i, i + n, ... of
    # the sampler's epoch (the same schedule in every process, from the same seed), and every process
    # gets as many batches (the last ones repeated from the start if needed), so none waits forever.
    loader = accelerator.prepare(DataLoader(_WithRows(dataset), batch_sampler=_TupleBatches(sampler), collate_fn=collate))
    task_names = list(train_features)

    history = {"config": asdict(config), "mixed_precision": mixed_precision, "cached_features": use_cache,
               "cache_seconds": cache_seconds, "teacher_seconds": teacher_seconds,
               "steps": [], "epochs": [], "skipped_nonfinite": []}
    checkpoint_dir = Path(output_dir) / "checkpoint" if output_dir is not None else None
    step, first_epoch, within_epoch = 0, 0, None
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs the output_dir of the interrupted run")
        restored = load_training_state(checkpoint_dir, accelerator.unwrap_model(model), optimizer, scheduler,
                                       process_index=accelerator.process_index)
        step, first_epoch, history = restored["step"], restored["epoch"], restored["history"]
        within_epoch = restored["within_epoch"]  # None: written at the end of an epoch

    def write_checkpoint(epochs_done: int, within: dict | None) -> None:
        # Every process's random state (each one's dropout has drawn differently), gathered; the main
        # process alone writes, then tells every process whether it could: a failed write (a full disk)
        # stops them all, and none goes on before the checkpoint is on disk.
        rng_states = gather_object([capture_rng_state()])
        error = None
        if accelerator.is_main_process:
            try:
                save_training_state(checkpoint_dir, epochs_done, step, accelerator.unwrap_model(model), optimizer,
                                    scheduler, history, rng_states, within_epoch=within, keep=config.keep_checkpoints)
            except CheckpointError as err:
                error = str(err)
        error = broadcast_object_list([error])[0]
        if error is not None:
            raise CheckpointError(error)

    progress = tqdm(total=config.epochs * len(loader), initial=step, desc="train",
                    disable=config.quiet or not accelerator.is_main_process)
    for epoch in range(first_epoch, config.epochs):
        # Accelerate's loader passes the epoch on to our sampler at every iteration (its own count of
        # iterations otherwise, which restarts at 0 after a resume), so the epoch is set there.
        loader.set_epoch(epoch)
        model.train()
        if frozen_backbone:
            accelerator.unwrap_model(model).encoder.eval()  # no dropout: the same features every epoch
        start, sentences, epoch_step = time.perf_counter(), 0, 0
        batches = iter(loader)
        if within_epoch is not None:  # resumed inside this epoch: its first batches are done
            epoch_step = _skip_done_batches(batches, within_epoch, accelerator.num_processes)
            sentences, start = within_epoch["sentences"], start - within_epoch["seconds"]
            within_epoch = None
        for task, batch, rows in batches:
            teacher = batch.pop("teacher", None)
            out = model(task, **batch, sentence_vectors=teacher is not None)
            objective = out["loss"]
            if teacher is not None:  # stay near the encoder's starting sentence vectors (distillation.py)
                out["keep"] = embedding_distance(out["sentence_vectors"], teacher, config.keep_distance)
                objective = objective + config.keep_embeddings * out["keep"]
            finite = _finite_everywhere(objective, accelerator)
            if finite:
                accelerator.backward(objective)
                if config.max_grad_norm:
                    accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)  # None, not 0: AdamW then skips parameters a batch did not reach

            step += 1
            epoch_step += 1
            if not finite:  # stop before the step (the last checkpoint stays the last good one), or skip it
                reports = _nonfinite_reports(step, epoch + 1, task, rows, objective, train_features,
                                             accelerator.unwrap_model(model).encoder.tokenizer, accelerator)
                if not config.skip_nonfinite:
                    raise NonFiniteLossError(_nonfinite_message(reports, checkpoint_dir))
                history.setdefault("skipped_nonfinite", []).extend(reports)
                if accelerator.is_main_process:
                    progress.write("skipped: " + "; ".join(_describe_nonfinite(r) for r in reports))
                progress.update(1)
                continue
            loss, n_sentences = out["loss"].item(), len(rows)
            entry = {"step": step, "epoch": epoch + 1, "task": task, "loss": loss, "lr": scheduler.get_last_lr()[-1]}
            if "keep" in out:
                entry["keep"] = out["keep"].item()  # "loss" is the task's loss alone
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
            if (checkpoint_dir is not None and config.checkpoint_every and step % config.checkpoint_every == 0
                    and epoch_step < len(loader)):  # at the epoch's end: the checkpoint after evaluation
                write_checkpoint(epoch, {"epoch_step": epoch_step, "processes": accelerator.num_processes,
                                         "sentences": sentences, "seconds": time.perf_counter() - start})
        train_seconds = time.perf_counter() - start

        unwrapped = accelerator.unwrap_model(model)
        record = {"epoch": epoch + 1, "train_seconds": train_seconds, "sentences_per_second": sentences / train_seconds}
        # Evaluation: once, by the main process, on the whole held-out sets (not one shard per process:
        # after the step every process holds the same weights, so N evaluations would give the same
        # numbers N times). The others wait in the broadcast, which then gives every process's history
        # the main process's record.
        if accelerator.is_main_process and (config.evaluate_every_epoch or epoch + 1 == config.epochs):
            with plain_forward(unwrapped):  # fp32 even under mixed precision (precision.py)
                record["validation"] = {task: evaluate_task(unwrapped, task, split, feats, config.eval_batch_size)
                                        for task, (split, feats) in eval_sets.items()}
            if stsb_pairs is not None:
                record["stsb_spearman"] = stsb_spearman(unwrapped.encoder, stsb_pairs, config.eval_batch_size)
        record = broadcast_object_list([record])[0]
        history["epochs"].append(record)
        if not config.quiet and accelerator.is_main_process:
            progress.write(f"epoch {epoch + 1}: {summarize(record, unwrapped.tasks)}")
        if checkpoint_dir is not None:
            write_checkpoint(epoch + 1, None)
    progress.close()
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # the caller's model runs in fp32 again
    if output_dir is not None and accelerator.is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "history.json").write_text(json.dumps(history, indent=1))
    accelerator.wait_for_everyone()
    return history


def _skip_done_batches(batches, within_epoch: dict, processes: int) -> int:
    """Resuming inside an epoch: take from `batches` (a fresh iterator over the epoch's loader) the
    batches this process had trained on; returns how many. The sampler's order depends on the seed and
    the epoch alone, so the epoch replays the same batches and goes on with the next one.

    Starting the iterator draws from torch's generator (the DataLoader's seed for its workers), as the
    epoch's start did before the checkpoint, whose random state is therefore set again afterwards:
    dropout then draws as in a run that was never interrupted.
    """
    done = within_epoch["epoch_step"]
    if within_epoch["processes"] != processes:  # each process skipped its share of the batches done then
        done = done * within_epoch["processes"] // processes
        warnings.warn(f"resuming inside an epoch with {processes} processes instead of {within_epoch['processes']}: "
                      "the rest of the epoch is split differently (some batches may be seen twice)", stacklevel=3)
    restored = capture_rng_state()
    for _ in range(done):
        next(batches)
    restore_rng_state(restored)
    return done


def _finite_everywhere(loss: torch.Tensor, accelerator: Accelerator) -> bool:
    """Whether the loss is finite in every process. With several, they agree (an all-reduce of a flag),
    so that all skip the step or all stop: a process that skipped its backward alone would leave the
    others waiting in the gradient all-reduce."""
    bad = (~torch.isfinite(loss.detach())).any().to(torch.float32).reshape(1)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    return not bad.item()


def _nonfinite_reports(step: int, epoch: int, task: str, rows: list[int], loss: torch.Tensor,
                       train_features: dict[str, dict[str, list]], tokenizer, accelerator: Accelerator) -> list[dict]:
    """What each process whose loss is not finite ran: step, task, training rows and the first sentence."""
    mine = None
    if not torch.isfinite(loss.detach()).all():
        first = tokenizer.decode(train_features[task]["input_ids"][rows[0]], skip_special_tokens=True)
        mine = {"step": step, "epoch": epoch, "task": task, "loss": str(loss.item()), "rows": [int(r) for r in rows],
                "first_sentence": first[:80], "process": accelerator.process_index}
    everyone = gather_object([mine]) if accelerator.num_processes > 1 else [mine]
    return [report for report in everyone if report is not None]


def _describe_nonfinite(report: dict) -> str:
    rows = report["rows"]
    shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
    where = f"process {report['process']}, " if report.get("process") else ""
    return (f"{where}step {report['step']} (epoch {report['epoch']}), task {report['task']!r}: loss {report['loss']} on "
            f"training rows [{shown}] (first sentence {report['first_sentence']!r})")


def _nonfinite_message(reports: list[dict], checkpoint_dir: Path | None) -> str:
    if checkpoint_dir is None:
        saved = "no output_dir, so no checkpoint"
    else:
        kept = kept_checkpoints(checkpoint_dir)
        saved = f"the last checkpoint, {checkpoint_dir / kept[-1]}, is intact" if kept else "no checkpoint written yet"
    return (f"non-finite loss at {'; '.join(map(_describe_nonfinite, reports))}. Training stopped before this step; "
            f"{saved}. --skip-nonfinite (TrainConfig.skip_nonfinite) skips such batches")


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
    if backbone_is_frozen(model):
        idle = [t for t in tasks or [] if not any(p.requires_grad for p in model.heads[t].parameters())]
        if idle:
            raise ValueError(f"freezing {scenario!r} leaves nothing trainable for {', '.join(map(repr, idle))} "
                             "(its head and the encoder are frozen): leave it out of the training tasks")


def make_adamw(groups: list[dict], lr: float) -> torch.optim.AdamW:
    """torch's AdamW, fused into one kernel where this torch supports it for these parameters: the
    per-tensor loop, torch's default on CPU, is a large part of a training step for MiniLM's 22.6M
    parameters (half of them in the word embeddings); the fused kernel is much cheaper."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


class _WithRows(torch.utils.data.Dataset):
    """A (task, row)-indexed dataset whose items also carry their row: (row, (task, example))."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: tuple[str, int]) -> tuple[int, tuple[str, dict]]:
        return index[1], self.dataset[index]


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
