import os
from pathlib import Path

import pytest
import torch

from mtl_utils import data
from mtl_utils.encoder import SentenceEncoder
from mtl_utils.model import MultiTaskModel
from mtl_utils.tasks import BUILTIN_TASKS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the project (../shared/data) or $MTL_DATA_DIR; tests that need it skip without it."""
    candidates = [os.environ.get("MTL_DATA_DIR"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "conll2003").is_dir():
            return Path(candidate)
    pytest.skip("real data not found (set MTL_DATA_DIR)")


@pytest.fixture(scope="session")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.from_pretrained()


@pytest.fixture()
def model() -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(SentenceEncoder.from_pretrained(), [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]])


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture()
def no_local_data(monkeypatch):
    """Neither $MTL_DATA_DIR nor a shared/ folder beside the checkout: loaders must go to the Hub."""
    monkeypatch.delenv("MTL_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "FALLBACK_DATA_DIRS", [])
