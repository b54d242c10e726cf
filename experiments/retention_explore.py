"""Exploration for issue 11 (one seed, notebook subsets): which recipe keeps the encoder's STS-B?

Same data and budget as notebooks 03-04 (4,000 CoNLL-2003 + 4,000 SST-2 training sentences, one
epoch, full validation sets), one row per recipe. One seed: a map of where to look, not a result.

    python experiments/retention_explore.py [--only NAME ...]  -> results/retention_explore.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mtl_utils.evaluation import evaluate_task, stsb_spearman
from mtl_utils.experiments import load_experiment_data, run_setting
from mtl_utils.interpolate import interpolate
from mtl_utils.model import ModelConfig, MultiTaskModel
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.training import TrainConfig

TASKS = [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]]
LORA_TRAIN = dict(lr=1e-3, llrd_decay=1.0)
RECIPES = {  # name: (ModelConfig settings, TrainConfig settings)
    "full fine-tuning": ({}, {}),
    "distil cosine 1": ({}, dict(keep_embeddings=1.0)),
    "distil cosine 10": ({}, dict(keep_embeddings=10.0)),
    "distil mse 10": ({}, dict(keep_embeddings=10.0, keep_distance="mse")),
    "LoRA 8 attention": (dict(lora=8), LORA_TRAIN),
    "LoRA 16 all": (dict(lora=16, lora_targets="all"), LORA_TRAIN),
    "LoRA 16 all + distil 1": (dict(lora=16, lora_targets="all"), dict(LORA_TRAIN, keep_embeddings=1.0)),
    "LoRA 8 per task": (dict(lora=8, lora_per_task=True), LORA_TRAIN),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--output", default="results/retention_explore.json")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.output)
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    data = load_experiment_data(MultiTaskModel.from_config(ModelConfig(), TASKS).encoder.tokenizer, 4000, None)
    for name, (model_settings, train_settings) in RECIPES.items():
        if args.only and name not in args.only:
            continue
        torch.manual_seed(args.seed)
        model = MultiTaskModel.from_config(ModelConfig(**model_settings), TASKS)
        pretrained = {k: v.clone() for k, v in model.encoder.backbone.state_dict().items()} if not model.lora else None
        config = TrainConfig(epochs=1, seed=args.seed, quiet=True, **train_settings)
        row = run_setting(name, model, data, config) | {"model": model_settings, "train": train_settings}
        rows = [r for r in rows if r["name"] != name] + [row]
        print(f"{name:<28} NER {row['ner_f1']:.3f}  SST-2 {row['sentiment_accuracy']:.3f}  "
              f"STS-B {row['stsb_spearman']:.3f}  {row['train_seconds']:.0f} s", flush=True)
        if name == "full fine-tuning":  # WiSE-FT points of this run: evaluation only
            for a in (0.3, 0.5, 0.7):
                start = time.perf_counter()
                mixed = interpolate(model, pretrained, a)
                point = {"name": f"interpolated a={a}", "ner_f1": evaluate_task(mixed, "ner", *data["eval_sets"]["ner"])["f1"],
                         "sentiment_accuracy": evaluate_task(mixed, "sentiment", *data["eval_sets"]["sentiment"])["accuracy"],
                         "stsb_spearman": stsb_spearman(mixed.encoder, data["stsb_pairs"]), "seed": args.seed,
                         "eval_seconds": time.perf_counter() - start}
                rows = [r for r in rows if r["name"] != point["name"]] + [point]
                print(f"{point['name']:<28} NER {point['ner_f1']:.3f}  SST-2 {point['sentiment_accuracy']:.3f}  "
                      f"STS-B {point['stsb_spearman']:.3f}", flush=True)
        out.write_text(json.dumps({"note": __doc__.split("\n")[0] + " One seed.", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
