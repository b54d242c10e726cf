"""A fork server for test_faults.py's kill-anywhere test, and the tiny model and data it trains.

Starting Python with torch and transformers takes ~9 s here, longer than a whole tiny run, so this
process imports everything and tokenises the data once, then forks one child per training run:

    stdin  {"out": DIR, "resume": bool, "pause": null | EVENT, "checkpoint": N}   one line per run
    stdout "pid N"            the child training in DIR (the test kills it with SIGKILL)
           "step N"           the child has finished step N (absolute: counted from its checkpoint)
           "paused EVENT"     the child stopped inside its N-th checkpoint write, at EVENT
           "exit N"           the child ended: 0, 1 (an exception, on stderr) or -9 (killed)

The pauses are made here, by wrapping the checkpoint writer's functions in the child; the package
itself has no test hooks. EVENTS are the moments inside one checkpoint write.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path

EVENTS = ("before-model", "truncated-model", "before-optimizer", "before-state", "before-latest", "before-prune")


def tiny_model():
    """MultiTaskModel(NER, sentiment) on a 2-layer, 16-wide BERT with the default MiniLM tokenizer:
    the same code paths as MiniLM (dropout included), ~0.5M parameters, checkpoints of ~6 MB."""
    import torch
    from transformers import BertConfig, BertModel

    from mtl_utils.encoder import SentenceEncoder
    from mtl_utils.model import MultiTaskModel
    from mtl_utils.tasks import BUILTIN_TASKS

    tokenizer = minilm_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=24, max_position_embeddings=128)
    encoder = SentenceEncoder(BertModel(config, add_pooling_layer=False), tokenizer, max_length=64)
    return MultiTaskModel(encoder, [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]])


@functools.lru_cache(maxsize=None)
def minilm_tokenizer():
    from mtl_utils.backbone import DEFAULT_MODEL, load_tokenizer, resolve_model_path

    return load_tokenizer(resolve_model_path(DEFAULT_MODEL))


def tiny_data(data_dir, tokenizer, n_train: int = 32, n_eval: int = 8):
    """(train_features, eval_sets) of NER and sentiment: the first rows of the real splits."""
    from mtl_utils.data import load_conll2003, load_sst2
    from mtl_utils.tasks import BUILTIN_TASKS
    from mtl_utils.tokenization import tokenize_split

    train_features, eval_sets = {}, {}
    for task, load in (("ner", load_conll2003), ("sentiment", load_sst2)):
        splits, spec = load(data_dir), BUILTIN_TASKS[task]
        train_features[task] = tokenize_split(splits["train"].select(range(n_train)), spec, tokenizer, 64)
        held_out = splits["validation"].select(range(n_eval))
        eval_sets[task] = (held_out, tokenize_split(held_out, spec, tokenizer, 64))
    return train_features, eval_sets


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write: lines of the server and its child never interleave


def pause_in_checkpoint_writes(event: str, checkpoint: int = 1) -> None:
    """In this (child) process: stop at `event` of the `checkpoint`-th checkpoint it writes, and wait
    to be killed."""
    from mtl_utils import checkpointing

    save_file, write_json = checkpointing.save_file, checkpointing._write_json
    written = {"checkpoints": 0}

    def pause(name: str) -> None:
        if written["checkpoints"] == checkpoint and name == event:
            say(f"paused {event}")
            time.sleep(600)

    def paused_save_file(tensors, path, *args, **kwargs):
        if Path(path).name == "model.safetensors":
            written["checkpoints"] += 1
            pause("before-model")
        else:
            pause("before-optimizer")
        save_file(tensors, path, *args, **kwargs)
        if Path(path).name == "model.safetensors" and written["checkpoints"] == checkpoint and event == "truncated-model":
            os.truncate(path, os.path.getsize(path) // 2)  # as if killed halfway through the file
            pause("truncated-model")

    def paused_write_json(path, data):
        pause("before-state" if Path(path).name == "state.json" else "before-latest")
        write_json(path, data)
        if Path(path).name == checkpointing.LATEST:
            pause("before-prune")

    checkpointing.save_file, checkpointing._write_json = paused_save_file, paused_write_json


def run_child(request: dict, features, eval_sets, config) -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from mtl_utils.training import train

    out = Path(request["out"])
    latest = out / "checkpoint" / "latest.json"
    first = json.loads(latest.read_text())["step"] if request["resume"] and latest.is_file() else 0
    done = {"steps": first}

    def report_step(optimizer, args, kwargs):
        done["steps"] += 1
        say(f"step {done['steps']}")

    register_optimizer_step_post_hook(report_step)
    if request.get("pause"):
        pause_in_checkpoint_writes(request["pause"], request.get("checkpoint", 1))
    train(tiny_model(), features, eval_sets, config, output_dir=out, resume=request["resume"])


def serve(data_dir: str, config_json: str) -> None:
    import torch

    torch.set_num_threads(1)  # before any work: no thread pool for the forked children to inherit
    from mtl_utils.training import TrainConfig

    config = TrainConfig(**json.loads(config_json))
    features, eval_sets = tiny_data(data_dir, minilm_tokenizer(), n_train=20)  # 5 + 5 batches of 4
    say("ready")
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run_child(request, features, eval_sets, config)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"exit {os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
