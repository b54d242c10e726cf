"""Read CoNLL-2003, SST-2, STS-B and SNIPS from local files (original formats, parsed line by line: a bad line is
reported with its file and line, not as a shape error in torch) or the Hugging Face Hub. Token tasks' splits have
`tokens` and `tags` (list[str]), sentence tasks' `text` and `label`."""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict

CONLL_NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
SST2_LABELS = ["negative", "positive"]
# The 7 SNIPS intents in snips/intent_label.txt's order, without UNK (JointBERT's placeholder; no utterance has it).
SNIPS_INTENT_LABELS = ["AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook",
                       "SearchCreativeWork", "SearchScreeningEvent"]

DATA_DIR_ENV = "MTL_DATA_DIR"
# Used when neither an argument nor $MTL_DATA_DIR names a folder: shared/data beside a checkout (as here and in CI).
FALLBACK_DATA_DIRS = [Path(__file__).resolve().parents[2] / "shared" / "data"]
HUB_IDS = {"conll2003": "lhoestq/conll2003", "sst2": "stanfordnlp/sst2", "stsb": "sentence-transformers/stsb",
           "snips": "benayas/snips"}
SNIPS_PLACEHOLDER_LABELS = ("UNK",)


class DataFormatError(ValueError):
    """A data file that does not follow its format; the message names the file and line."""


class DataUnavailableError(RuntimeError):
    """Neither a local data directory nor the Hugging Face Hub could provide a dataset."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The argument, else $MTL_DATA_DIR, else FALLBACK_DATA_DIRS, else None (use the Hub)."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if chosen is None:
        return next((d for d in FALLBACK_DATA_DIRS if d.is_dir()), None)
    path = Path(chosen).expanduser()
    if not path.is_dir():
        source = "argument" if data_dir is not None else f"${DATA_DIR_ENV}"
        where = "" if path.is_absolute() else f", relative to the working directory {Path.cwd()}"
        raise FileNotFoundError(f"data directory {path} (from {source}{where}) does not exist or is not a directory")
    return path


def _read_lines(path: str | os.PathLike) -> list[str]:
    """Lines without their endings (LF or CRLF), a UTF-8 BOM removed; non-UTF-8 bytes name the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    lines = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataFormatError(f"{path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
        lines.append(line.removeprefix("\ufeff") if number == 1 else line)
    return lines


def read_conll(path: str | os.PathLike, labels: list[str] = CONLL_NER_LABELS, tag_column: int = 3) -> dict[str, list]:
    """Parse a CoNLL-2003 file (`token POS chunk NER` per line, blank lines between sentences, `-DOCSTART-`
    between documents). Every line needs as many columns as the first, and a tag in `labels`; tags are kept as
    written (an I- tag after O is not repaired: strict seqeval scoring treats it as the start of an entity).
    `document`: each sentence's document, counted from 0 (-1 before the file's first -DOCSTART-)."""
    sentences, tags, documents = [], [], []  # per sentence: its words, its tags, its document
    words, word_tags, document = [], [], -1  # the sentence being read
    n_columns, label_set = None, set(labels)
    # A final blank line ends the last sentence even in a file that does not end with one.
    for number, line in enumerate(_read_lines(path) + [""], start=1):
        if not line.strip():
            if words:
                sentences.append(words)
                tags.append(word_tags)
                documents.append(document)
                words, word_tags = [], []
            continue
        columns = line.split()
        if columns[0] == "-DOCSTART-":
            document += 1
            continue
        if n_columns is None:
            n_columns = len(columns)
            if n_columns <= tag_column:
                raise DataFormatError(f"{path}:{number}: expected at least {tag_column + 1} columns, found {n_columns}: {line!r}")
        if len(columns) != n_columns:
            raise DataFormatError(f"{path}:{number}: expected {n_columns} columns like the first line, found {len(columns)}: {line!r}")
        tag = columns[tag_column]
        if tag not in label_set:
            raise DataFormatError(f"{path}:{number}: tag {tag!r} is not in the label set {labels}")
        words.append(columns[0])
        word_tags.append(tag)
    if not sentences:
        raise DataFormatError(f"{path}: no sentences found (empty dataset)")
    return {"tokens": sentences, "tags": tags, "document": documents}


def read_sst2_tsv(path: str | os.PathLike, labels: list[str] = SST2_LABELS) -> dict[str, list]:
    """Parse a GLUE SST-2 TSV (`sentence<TAB>label` with a header); labels are integers 0/1."""
    lines = _read_lines(path)
    if not lines or lines[0].split("\t")[:2] != ["sentence", "label"]:
        raise DataFormatError(f"{path}:1: expected the header 'sentence<TAB>label', found {lines[0]!r}" if lines else f"{path}: empty file")
    texts, names = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[1].strip():
            raise DataFormatError(f"{path}:{number}: expected 'sentence<TAB>label', found {len(fields)} field(s): {line!r}")
        try:
            label = int(fields[1])
        except ValueError:
            raise DataFormatError(f"{path}:{number}: label {fields[1]!r} is not an integer") from None
        if not 0 <= label < len(labels):
            raise DataFormatError(f"{path}:{number}: label {label} is outside 0..{len(labels) - 1} ({labels})")
        texts.append(fields[0].strip())
        names.append(labels[label])
    if not texts:
        raise DataFormatError(f"{path}: no examples found (empty dataset)")
    return {"text": texts, "label": names}


def read_stsb_tsv(path: str | os.PathLike) -> dict[str, list]:
    """Parse GLUE STS-B (no header; sentence1, sentence2 and score in columns 8, 9, 10)."""
    first, second, scores = [], [], []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 10:
            raise DataFormatError(f"{path}:{number}: expected 10 tab-separated columns, found {len(fields)}")
        try:
            score = float(fields[9])
        except ValueError:
            raise DataFormatError(f"{path}:{number}: score {fields[9]!r} is not a number") from None
        first.append(fields[7])
        second.append(fields[8])
        scores.append(score)
    if not scores:
        raise DataFormatError(f"{path}: no sentence pairs found (empty dataset)")
    return {"sentence1": first, "sentence2": second, "score": scores}


def read_intent_labels(path: str | os.PathLike) -> list[str]:
    """Intent names from a JointBERT-style `intent_label.txt`, one per line, in file order, without UNK."""
    labels: list[str] = []
    for number, line in enumerate(_read_lines(path), start=1):
        name = line.strip()
        if not name or name in SNIPS_PLACEHOLDER_LABELS:
            continue
        if name in labels:
            raise DataFormatError(f"{path}:{number}: intent {name!r} is listed twice")
        labels.append(name)
    if len(labels) < 2:
        raise DataFormatError(f"{path}: expected at least two intents (besides UNK), found {labels}")
    return labels


def read_intent_split(directory: str | os.PathLike, labels: list[str]) -> dict[str, list]:
    """One SNIPS/ATIS split: `seq.in` (the words of one utterance per line) and `label` (its intent),
    aligned line by line. The words are joined by single spaces (SNIPS lines often end with a space)."""
    text_path, label_path = Path(directory) / "seq.in", Path(directory) / "label"
    utterances, intents = _read_lines(text_path), _read_lines(label_path)
    if len(utterances) != len(intents):
        shorter, longer = sorted([(text_path, utterances), (label_path, intents)], key=lambda pair: len(pair[1]))
        raise DataFormatError(f"{shorter[0]}:{len(shorter[1]) + 1}: the file ends after {len(shorter[1])} lines, but "
                              f"{longer[0]} has {len(longer[1])}; seq.in and label must be aligned line by line")
    texts, names = [], []
    for number, (utterance, intent) in enumerate(zip(utterances, intents), start=1):
        words, intent = utterance.split(), intent.strip()
        if not words:
            raise DataFormatError(f"{text_path}:{number}: empty utterance (its intent in {label_path.name} is {intent!r})")
        if not intent:
            raise DataFormatError(f"{label_path}:{number}: empty intent for {utterance.strip()!r}")
        if intent not in labels:
            note = " (a placeholder in intent_label.txt, not an intent)" if intent in SNIPS_PLACEHOLDER_LABELS else ""
            raise DataFormatError(f"{label_path}:{number}: intent {intent!r}{note} is not in the label set {labels}")
        texts.append(" ".join(words))
        names.append(intent)
    if not texts:
        raise DataFormatError(f"{text_path}: no utterances found (empty dataset)")
    return {"text": texts, "label": names}


def _from_hub(dataset: str, splits: tuple[str, ...], columns: tuple[str, ...], note: str = "") -> DatasetDict:
    """The Hub copy of `dataset`, which must have these splits, each with these columns (else a DataFormatError)."""
    from datasets import load_dataset  # here: tests stand in for it (datasets.load_dataset) after this module loads
    hub_id = HUB_IDS[dataset]
    try:
        hub = load_dataset(hub_id)
    except Exception as err:  # offline, DNS, 404, ...: all mean "not from the Hub"
        raise DataUnavailableError(f"no data directory was given and {hub_id} could not be loaded from the Hugging "
                                   f"Face Hub ({type(err).__name__}: {err}). Set {DATA_DIR_ENV} (or pass --data-dir) "
                                   f"to a folder laid out like shared/data, with {dataset}/ inside.{note}") from err
    for split in splits:
        if split not in hub:
            raise DataFormatError(f"{hub_id}: no split {split!r} (found {list(hub)})")
        missing = [column for column in columns if column not in hub[split].column_names]
        if missing:
            raise DataFormatError(f"{hub_id}, split {split!r}: no column {missing[0]!r} (found {hub[split].column_names})")
    return hub


def _hub_labels(hub: DatasetDict, dataset: str, splits: tuple[str, ...], column: str, expected: list[str]) -> dict:
    """{split: its `column` as label names}. The Hub's ids (a ClassLabel, or sequences of them) are read by its own
    names: another order is fine, but not another label set, ids without names, or ids outside them (-1: unlabeled)."""
    hub_id, feature = HUB_IDS[dataset], hub["train"].features[column]
    sequences = hasattr(feature, "feature")
    feature = getattr(feature, "feature", feature)  # Sequence(ClassLabel) -> ClassLabel
    if not isinstance(feature, ClassLabel):
        kind = getattr(feature, "dtype", type(feature).__name__)
        raise DataFormatError(f"{hub_id}: column {column!r} holds plain {kind} values, not label names (a ClassLabel), "
                              f"so its ids cannot be mapped to the labels {expected}")
    names = list(feature.names)
    if sorted(names) != sorted(expected):
        raise DataFormatError(f"{hub_id}: column {column!r} has labels {names}, expected {expected}")
    decoded = {}
    for split in splits:
        rows = hub[split][column] if sequences else [hub[split][column]]
        outside = sorted({i for ids in rows for i in ids if not 0 <= i < len(names)})
        if outside:
            raise DataFormatError(f"{hub_id}, split {split!r}: column {column!r} has ids {outside[:5]} "
                                  f"outside 0..{len(names) - 1} ({names})")
        decoded[split] = [[names[i] for i in ids] for ids in rows] if sequences else [names[i] for i in rows[0]]
    return decoded


def load_conll2003(data_dir: str | os.PathLike | None = None) -> DatasetDict:
    """CoNLL-2003 NER: train / validation / test with string IOB2 tags; from local files also `document` (the Hub
    copy has no document boundaries)."""
    root, splits = resolve_data_dir(data_dir), ("train", "validation", "test")
    if root is not None:
        return DatasetDict({split: Dataset.from_dict(read_conll(root / "conll2003" / f"{split}.txt")) for split in splits})
    hub = _from_hub("conll2003", splits, ("tokens", "ner_tags"))
    tags = _hub_labels(hub, "conll2003", splits, "ner_tags", CONLL_NER_LABELS)
    return DatasetDict({s: Dataset.from_dict({"tokens": hub[s]["tokens"], "tags": tags[s]}) for s in splits})


def load_sst2(data_dir: str | os.PathLike | None = None) -> DatasetDict:
    """SST-2: train / validation (the GLUE test split has no labels, so it is not loaded). Train also has
    `source_sentence`, the row of its phrase's sentence (`source_sentences`)."""
    root, splits = resolve_data_dir(data_dir), ("train", "validation")
    if root is not None:
        loaded = {split: read_sst2_tsv(root / "sst2" / f"{split}.tsv") for split in splits}
    else:
        hub = _from_hub("sst2", splits, ("sentence", "label"))
        labels = _hub_labels(hub, "sst2", splits, "label", SST2_LABELS)
        loaded = {split: {"text": [s.strip() for s in hub[split]["sentence"]], "label": labels[split]} for split in splits}
    loaded["train"]["source_sentence"] = source_sentences(loaded["train"]["text"])
    return DatasetDict({split: Dataset.from_dict(columns) for split, columns in loaded.items()})


def source_sentences(phrases: list[str]) -> list[int]:
    """GLUE's SST-2 training rows are the phrases of about 6,900 sentences (the sentences among them). For each,
    the row of a longest phrase that contains it, word for word: phrases of one sentence share it, and a dev
    split drawn by it (selection.py) keeps every phrase of a sentence on one side."""
    order = sorted(range(len(phrases)), key=lambda i: (-len(phrases[i]), i))
    owner, containing = [0] * len(phrases), defaultdict(list)  # word -> the source sentences containing it
    for i in order:  # longest first: a phrase's source sentence is found before the phrase
        words, padded = set(phrases[i].split()), f" {phrases[i]} "
        candidates = min((containing[word] for word in words), key=len, default=[])
        owner[i] = next((row for row in candidates if padded in f" {phrases[row]} "), i)
        for word in words if owner[i] == i else ():
            containing[word].append(i)
    return owner


def load_stsb_validation(data_dir: str | os.PathLike | None = None) -> Dataset:
    """STS-B validation pairs with gold similarity scores (0-5 locally, 0-1 on the Hub; Spearman ignores scale)."""
    if (root := resolve_data_dir(data_dir)) is not None:
        return Dataset.from_dict(read_stsb_tsv(root / "stsb" / "validation.tsv"))
    return _from_hub("stsb", ("validation",), ("sentence1", "sentence2", "score"))["validation"]


def load_snips_intent(data_dir: str | os.PathLike | None = None) -> DatasetDict:
    """SNIPS intents (Goo et al. 2018 split): train / validation / test, label one of SNIPS_INTENT_LABELS. Locally
    `snips/{train,validation,test}/{seq.in,label}` and `snips/intent_label.txt`, else the Hub copy `benayas/snips`
    (columns `text`, `category`; train 13,084 / test 1,400; untried offline), whose test split mixes the benchmark's
    validation and test utterances in an unchecked order: shuffled and halved, 700 each, not the local files' 700."""
    if (root := resolve_data_dir(data_dir)) is not None:
        label_file = root / "snips" / "intent_label.txt"
        labels = read_intent_labels(label_file)
        if sorted(labels) != sorted(SNIPS_INTENT_LABELS):
            raise DataFormatError(f"{label_file}: lists the intents {labels} (UNK left out), expected {SNIPS_INTENT_LABELS}")
        return DatasetDict({split: Dataset.from_dict(read_intent_split(root / "snips" / split, labels))
                            for split in ("train", "validation", "test")})
    hub_id = HUB_IDS["snips"]
    hub = _from_hub("snips", ("train", "test"), ("text", "category"), f" ({hub_id} is a community copy of SNIPS chosen "
                    "from its dataset card; loading it has not been tested from this project, which has no network.)")
    found_labels = sorted(set(hub["train"]["category"]) | set(hub["test"]["category"]))
    if found_labels != sorted(SNIPS_INTENT_LABELS):
        raise DataFormatError(f"Hub column 'category' of {hub_id} has labels {found_labels}, expected {SNIPS_INTENT_LABELS}")

    def as_split(rows: Dataset) -> Dataset:
        return Dataset.from_dict({"text": [" ".join(t.split()) for t in rows["text"]], "label": list(rows["category"])})

    held_out = hub["test"].shuffle(seed=0)
    half = len(held_out) // 2
    return DatasetDict({"train": as_split(hub["train"]), "validation": as_split(held_out.select(range(half))),
                        "test": as_split(held_out.select(range(half, len(held_out))))})
