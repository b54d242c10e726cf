"""A byte-level BPE backbone (RoBERTa-style), built tiny and offline: pre-split words must be tokenised
as in running text, and training, freezing and LLRD must work on it as on the default MiniLM."""
import shutil

import pytest
import torch
from safetensors import safe_open
from tokenizers import ByteLevelBPETokenizer, Tokenizer, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast, RobertaConfig, RobertaModel, RobertaTokenizerFast

from mtl_utils.backbone import DEFAULT_MODEL, load_backbone, resolve_model_path
from mtl_utils.encoder import SentenceEncoder
from mtl_utils.freezing import apply_freezing
from mtl_utils.llrd import llrd_parameter_groups
from mtl_utils.model import MultiTaskModel
from mtl_utils.tasks import BUILTIN_TASKS
from tests.helpers import batches, snapshot

CORPUS = ["EU rejects German call to boycott British lamb .", "Peter Blackburn spoke in Brussels on Monday .",
          "The German call was rejected by the EU .", "a gorgeous , witty film", "dull and lifeless film",
          "Blackburn said the film was witty and gorgeous ."]
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4
SENTENCES = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn", "spoke", "in", "Brussels", "."],
             ["witty", ",", "gorgeous", "lifeless", "zebra"]]  # "zebra": unseen in training, split into bytes


def bpe_backend() -> Tokenizer:
    bpe = ByteLevelBPETokenizer()  # ByteLevel pre-tokenizer without prefix space, as RoBERTa publishes it
    bpe.train_from_iterator(CORPUS, vocab_size=320, min_frequency=1, special_tokens=SPECIAL)
    # <s> ... </s> around each text, as published too (transformers 4.x does not add it by itself)
    bpe._tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    return bpe._tokenizer


def tiny_roberta(vocab_size: int) -> RobertaModel:
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=37, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2)
    return RobertaModel(config)  # with a pooler, as published RoBERTa checkpoints are


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-roberta")
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe_backend())  # saved with add_prefix_space=False
    tokenizer.save_pretrained(directory)
    tiny_roberta(len(tokenizer)).save_pretrained(directory, safe_serialization=True)
    return directory


def reference_ids(directory, words: list[str]) -> list[int]:
    """The `tokenizers` file as saved (no prefix space) on the running text, every word after a space:
    RoBERTa's convention for pre-split words (add_prefix_space=True) puts "Ġ" before the first word too."""
    return Tokenizer.from_file(str(directory / "tokenizer.json")).encode(" " + " ".join(words)).ids


def check_split_words(tokenizer, directory) -> None:
    encoded = tokenizer(SENTENCES, is_split_into_words=True)
    for i, words in enumerate(SENTENCES):
        ids = encoded["input_ids"][i]
        assert ids == reference_ids(directory, words), f"pre-split {words} tokenised unlike the running text"
        word_ids = encoded.word_ids(i)
        assert word_ids[0] is None and word_ids[-1] is None  # <s> ... </s>
        tokens = tokenizer.convert_ids_to_tokens(ids)
        for w, word in enumerate(words):
            pieces = [t for t, k in zip(tokens, word_ids) if k == w]
            assert pieces[0].startswith("Ġ") and tokenizer.convert_tokens_to_string(pieces) == " " + word
            assert [k for k in word_ids if k == w] == [w] * len(pieces)  # one contiguous run per word
        assert sorted({k for k in word_ids if k is not None}) == list(range(len(words)))


def test_pre_split_words_tokenised_as_running_text(roberta_dir):
    encoder = SentenceEncoder.from_pretrained(str(roberta_dir))
    check_split_words(encoder.tokenizer, roberta_dir)


def test_generic_fast_byte_level_tokenizer(roberta_dir, tmp_path):
    """A tokenizer saved as a generic PreTrainedTokenizerFast (as ModernBERT's is): the add_prefix_space
    argument does not rebuild its pre-tokenizer, so the loader has to set it on the backend itself."""
    for name in ("config.json", "model.safetensors"):
        shutil.copy(roberta_dir / name, tmp_path / name)
    PreTrainedTokenizerFast(tokenizer_object=bpe_backend(), bos_token="<s>", eos_token="</s>", cls_token="<s>",
                            sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
                            mask_token="<mask>").save_pretrained(tmp_path)
    _, tokenizer = load_backbone(str(tmp_path))
    encoded = tokenizer(SENTENCES[0], is_split_into_words=True, add_special_tokens=False)
    assert encoded["input_ids"] == reference_ids(roberta_dir, SENTENCES[0])[1:-1]  # no post-processor: no <s> </s>


def test_wordpiece_default_unchanged():
    """The default MiniLM (WordPiece) tokenizer is loaded as published: the same ids, split or not."""
    _, tokenizer = load_backbone(DEFAULT_MODEL)
    published = AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    assert tokenizer(SENTENCES, is_split_into_words=True)["input_ids"] == published(SENTENCES, is_split_into_words=True)["input_ids"]
    assert tokenizer(CORPUS)["input_ids"] == published(CORPUS)["input_ids"]
    assert not getattr(tokenizer, "add_prefix_space", False)


def test_saved_encoder_reloads_without_pooler_or_warning(roberta_dir, tmp_path, capfd):
    SentenceEncoder.from_pretrained(str(roberta_dir)).save_pretrained(tmp_path / "enc")
    capfd.readouterr()
    reloaded = SentenceEncoder.from_pretrained(str(tmp_path / "enc"))
    assert "MISSING" not in capfd.readouterr().err  # transformers' load report of weights it had to initialise
    assert not [n for n, _ in reloaded.backbone.named_parameters() if "pooler" in n]
    check_split_words(reloaded.tokenizer, roberta_dir)


def test_training_step_freezing_and_llrd(roberta_dir):
    assert "pooler.dense.weight" in safe_open(roberta_dir / "model.safetensors", "pt").keys()  # saved with one
    encoder = SentenceEncoder.from_pretrained(str(roberta_dir))
    assert encoder.backbone.pooler is None
    assert not [n for n, _ in encoder.backbone.named_parameters() if "pooler" in n]
    torch.manual_seed(0)
    model = MultiTaskModel(encoder, [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]])
    apply_freezing(model, "bottom:1")
    groups = llrd_parameter_groups(model, lr=1e-3, head_lr=1e-2, decay=0.8)
    in_groups = [id(p) for g in groups for p in g["params"]]
    assert len(in_groups) == len(set(in_groups))
    assert set(in_groups) == {id(p) for p in model.parameters() if p.requires_grad}
    names = {id(p): n for n, p in model.named_parameters()}

    optimizer = torch.optim.AdamW(groups)
    data = batches(encoder.tokenizer)
    before = snapshot(model)
    got_grad = set()
    model.train()
    for task in ("ner", "sentiment"):
        loss = model(task, **data[task])["loss"]
        assert torch.isfinite(loss)
        loss.backward()
        got_grad |= {id(p) for p in model.parameters() if p.grad is not None}
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert not [names[i] for i in in_groups if i not in got_grad], "optimizer holds parameters without a gradient"
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]) != parameter.requires_grad, name  # frozen still, trained moved
