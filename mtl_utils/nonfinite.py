"""A NaN or infinite loss: every process agrees, then the run stops before the step (the last
checkpoint is the last good state; the message names the batch) or, with `skip_nonfinite`, skips it."""
from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from .checkpointing import kept_checkpoints


class NonFiniteLossError(RuntimeError):
    """Training stopped before a step whose loss was NaN or infinite."""


class NonFiniteGuard:
    def __init__(self, accelerator: Accelerator, skip: bool, train_features: dict[str, dict[str, list]],
                 tokenizer, checkpoint_dir: Path | None):
        self.accelerator, self.skip, self.features = accelerator, skip, train_features
        self.tokenizer, self.checkpoint_dir = tokenizer, checkpoint_dir

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite in every process (an all-reduced flag): all skip or all stop, as a
        process that skipped its backward alone would leave the others waiting in the all-reduce."""
        bad = (~torch.isfinite(loss.detach())).any().to(torch.float32).reshape(1)
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        return not bad.item()

    def handle(self, position, task: str, rows: list[int], loss: torch.Tensor, history: dict, progress) -> None:
        """After a step that was not taken: raise NonFiniteLossError, or record what each process ran
        (step, task, training rows, first sentence) in history["skipped_nonfinite"] and say so."""
        mine = None
        if not torch.isfinite(loss.detach()).all():
            first = self.tokenizer.decode(self.features[task]["input_ids"][rows[0]], skip_special_tokens=True)
            mine = {"step": position.step, "epoch": position.epoch + 1, "task": task, "loss": str(loss.item()),
                    "rows": [int(r) for r in rows], "first_sentence": first[:80],
                    "process": self.accelerator.process_index}
        everyone = gather_object([mine]) if self.accelerator.num_processes > 1 else [mine]
        reports = [report for report in everyone if report is not None]
        if not self.skip:
            raise NonFiniteLossError(f"non-finite loss at {'; '.join(map(describe, reports))}. Training stopped "
                                     f"before this step; {self._saved()}. --skip-nonfinite "
                                     "(TrainConfig.skip_nonfinite) skips such batches")
        history.setdefault("skipped_nonfinite", []).extend(reports)
        if self.accelerator.is_main_process:
            progress.write("skipped: " + "; ".join(map(describe, reports)))

    def _saved(self) -> str:
        if self.checkpoint_dir is None:
            return "no output_dir, so no checkpoint"
        kept = kept_checkpoints(self.checkpoint_dir)
        return f"the last checkpoint, {self.checkpoint_dir / kept[-1]}, is intact" if kept else "no checkpoint yet"


def describe(report: dict) -> str:
    rows = report["rows"]
    shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
    where = f"process {report['process']}, " if report.get("process") else ""
    return (f"{where}step {report['step']} (epoch {report['epoch']}), task {report['task']!r}: loss {report['loss']} "
            f"on training rows [{shown}] (first sentence {report['first_sentence']!r})")
