"""What the experiment notebooks share: the same data subsets, a fresh model, one run -> one row of results,
so that rows differ only in the setting being compared."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

from .backbone import named_blocks
from .encoder import SentenceEncoder
from .evaluation import evaluate_task, stsb_spearman
from .freezing import apply_freezing
from .memory import training_memory
from .model import MultiTaskModel
from .prepare import prepare_tasks
from .tasks import BUILTIN_TASKS
from .tokenization import pad_batch
from .training import TrainConfig, train

TASKS = ("ner", "sentiment")


def load_experiment_data(tokenizer, n_train: int | None, n_eval: int | None, seed: int = 0,
                         data_dir: str | None = None) -> dict:
    """Random `n_train` training sentences per task, the first `n_eval` validation ones / STS-B pairs: prepare_tasks."""
    data = prepare_tasks([BUILTIN_TASKS[t] for t in TASKS], tokenizer, 256, data_dir, ("train", "validation"),
                         n_train, n_eval, seed, stsb=True, max_stsb=n_eval)  # 256: the models' default max_length
    eval_sets = data.held_out["validation"]
    return {"train_splits": data.train_splits, "train_features": data.train_features, "eval_sets": eval_sets,
            "stsb_pairs": data.stsb_pairs, "sizes": {"train": {t: len(s) for t, s in data.train_splits.items()},
                                                     "validation": {t: len(s) for t, (s, _) in eval_sets.items()},
                                                     "stsb_pairs": len(data.stsb_pairs)}}


def fresh_model(tasks: tuple[str, ...] = TASKS, seed: int = 0, device: str = "cpu") -> MultiTaskModel:
    torch.manual_seed(seed)
    return MultiTaskModel(SentenceEncoder.from_pretrained(), [BUILTIN_TASKS[t] for t in tasks]).to(device)


def typical_batch(features: dict[str, list], pad_token_id: int, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """A batch of the median-length training sentences, for memory measurements."""
    order = sorted(range(len(features["input_ids"])), key=lambda i: len(features["input_ids"][i]))
    middle = max(0, len(order) // 2 - batch_size // 2)
    keys = [k for k in ("input_ids", "attention_mask", "word_shape_ids", "labels") if k in features]
    return pad_batch([{k: features[k][i] for k in keys} for i in order[middle:middle + batch_size]], pad_token_id)


def run_setting(name: str, model: MultiTaskModel, data: dict, config: TrainConfig, freeze: str | None = None,
                tasks: tuple[str, ...] | None = None) -> dict:
    """Freeze, train on `tasks` (default: every task of the model), evaluate on held-out data; one row."""
    tasks = tasks or tuple(model.tasks)
    if freeze is not None:
        apply_freezing(model, freeze)
    memory_task, device = tasks[0], next(model.parameters()).device
    batch = typical_batch(data["train_features"][memory_task], model.encoder.tokenizer.pad_token_id)
    memory = training_memory(model, memory_task, {k: v.to(device) for k, v in batch.items()})
    start = time.perf_counter()
    eval_sets = {t: pair for t, pair in data["eval_sets"].items() if t in model.tasks}
    history = train(model, {t: data["train_features"][t] for t in tasks}, eval_sets, config, data["stsb_pairs"])
    last = history["epochs"][-1]
    return {"name": name, "freeze": freeze or "none", "tasks": list(tasks), "seed": config.seed,
            "llrd_decay": config.llrd_decay, "epochs": config.epochs,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "train_seconds": sum(e["train_seconds"] for e in history["epochs"]) + history["cache_seconds"],
            "cached_features": history["cached_features"],
            "train_sentences": sum(len(data["train_features"][t]["input_ids"]) for t in tasks) * config.epochs,
            "memory_mib": memory, "memory_task": memory_task, **headline_scores(model, last["validation"], data),
            "stsb_spearman": last["stsb_spearman"], "wall_seconds": time.perf_counter() - start}


def evaluate_only(name: str, model: MultiTaskModel, data: dict) -> dict:
    """The same row for a model that is not trained (everything frozen): held-out scores only."""
    scores = {t: evaluate_task(model, t, split, feats) for t, (split, feats) in data["eval_sets"].items()}
    return {"name": name, "freeze": "all", "trainable_parameters": 0, "train_seconds": 0.0,
            **headline_scores(model, scores, data), "stsb_spearman": stsb_spearman(model.encoder, data["stsb_pairs"])}


def headline_scores(model: MultiTaskModel, scores: dict[str, dict], data: dict) -> dict[str, float | None]:
    """`{task}_{headline}` (ner_f1, sentiment_accuracy: the notebooks' columns) of each task; None if not scored."""
    kinds = {t: (model.tasks.get(t) or BUILTIN_TASKS[t]).task_kind for t in [*data["eval_sets"], *model.tasks]}
    return {f"{t}_{k.headline}": float(scores[t][k.headline]) if t in scores else None for t, k in kinds.items()}


def snapshot_backbone(model: MultiTaskModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.encoder.backbone.state_dict().items()}


def layer_change(model: MultiTaskModel, reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """How far each part of the backbone moved: ||W - W0|| / ||W0|| over all its parameters."""
    names = {id(p): n for n, p in model.encoder.backbone.named_parameters()}
    change = {}
    for part, module in named_blocks(model.encoder.backbone):
        moved = total = 0.0
        for parameter in module.parameters():
            before = reference[names[id(parameter)]]
            moved += (parameter.detach().cpu() - before.cpu()).pow(2).sum().item()
            total += before.pow(2).sum().item()
        change[part] = (moved / total) ** 0.5
    return change


def results_file(name: str, fast: bool) -> Path:
    """results/NAME in the repository; in fast mode a temporary folder, so CI never overwrites the committed results."""
    if fast:
        return Path(tempfile.gettempdir()) / "mtl_fast_results" / name
    here = Path.cwd()
    return (here.parent if here.name == "notebooks" else here) / "results" / name


def save_results(name: str, payload: dict, fast: bool) -> Path:
    path = results_file(name, fast)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**payload, "device": "cuda" if torch.cuda.is_available() else "cpu",
                                "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}, indent=1))
    return path
