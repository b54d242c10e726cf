"""Weight-space interpolation between the pretrained (a = 0) and the fine-tuned (a = 1) encoder (WiSE-FT,
Wortsman et al. 2022): points between keep much of what the pretrained model knew at little cost to the task.
`python -m mtl_utils.interpolate RUN_DIR` (a `mtl_utils.train` --output-dir) -> RUN_DIR/interpolation.json"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .backbone import load_backbone
from .data import DataUnavailableError
from .evaluation import evaluate_task, stsb_spearman
from .model import MultiTaskModel
from .prepare import prepare_tasks


def interpolate(model: MultiTaskModel, pretrained: dict[str, torch.Tensor], a: float) -> MultiTaskModel:
    """A copy of `model` whose backbone weights are (1 - a) * pretrained + a * its own (a = 0 and 1 exactly)."""
    if not 0 <= a <= 1:
        raise ValueError(f"interpolation weight a must be in [0, 1], got {a}")
    if model.lora is not None:
        raise ValueError("interpolation needs a fine-tuned backbone; a LoRA model's base weights are the "
                         "pretrained ones (scale its adapters instead)")
    mixed = copy.deepcopy(model)
    state = mixed.encoder.backbone.state_dict()
    if set(state) != set(pretrained):
        raise ValueError(f"the pretrained weights do not match this backbone: {sorted(set(state) ^ set(pretrained))[:5]}")
    for name, finetuned in state.items():
        start = pretrained[name].to(finetuned.device)
        if a == 0 or not finetuned.is_floating_point():  # integer buffers (position ids) are the same in both
            finetuned.copy_(start)
        elif a < 1:
            finetuned.copy_(torch.lerp(start, finetuned, a))
    return mixed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m mtl_utils.interpolate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="the --output-dir of a `python -m mtl_utils.train` run")
    parser.add_argument("--steps", type=int, default=11, help="points from a = 0 to a = 1 (11: 0, 0.1, ..., 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    run = Path(args.run_dir)
    if not (run / "args.json").is_file() or not (run / "model").is_dir():
        raise FileNotFoundError(f"{run}: not a training run (args.json and model/ are written by mtl_utils.train)")
    if args.steps < 2:
        raise ValueError(f"--steps must be at least 2, got {args.steps}")
    settings = json.loads((run / "args.json").read_text())
    model = MultiTaskModel.from_pretrained(run / "model")
    pretrained = load_backbone(model.encoder.name_or_path)[0].state_dict()
    # The run's validation data, capped as it was there, and STS-B unless --no-stsb: a = 1 scores as its last epoch.
    data = prepare_tasks(list(model.tasks.values()), model.encoder.tokenizer, model.encoder.max_length,
                         settings.get("data_dir"), ("validation",), max_eval=settings.get("max_eval_samples"),
                         stsb=not settings.get("no_stsb"), context=model.context_sentences)
    rows = []
    for i in tqdm(range(args.steps), desc="interpolate", disable=args.quiet):
        a = i / (args.steps - 1)
        mixed = interpolate(model, pretrained, a)
        stsb = {} if data.stsb_pairs is None else {"stsb_spearman": stsb_spearman(mixed.encoder, data.stsb_pairs)}
        row = {"a": a, **stsb}
        for task, (split, features) in data.held_out.get("validation", {}).items():
            row[task] = {k: v for k, v in evaluate_task(mixed, task, split, features).items() if k != "per_type"}
        rows.append(row)
    result = {"run": str(run.name), "validation": "validation splits" + (
        f" (first {settings['max_eval_samples']})" if settings.get("max_eval_samples") else ""), "points": rows}
    (run / "interpolation.json").write_text(json.dumps(result, indent=1))
    for row in rows:
        scores = [f"{t} {row[t][s.task_kind.headline]:.4f}" for t, s in model.tasks.items()]
        stsb = [f"STS-B {row['stsb_spearman']:.4f}"] if "stsb_spearman" in row else []
        print("  ".join([f"a={row['a']:.1f}", *scores, *stsb]))
    return result


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, DataUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
