"""What a task is: a name, a kind (one label per sentence or per word) and its label names."""
from __future__ import annotations

from dataclasses import asdict, dataclass

TASK_KINDS = ("sentence", "token")

CONLL_NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
SST2_LABELS = ["negative", "positive"]
# The 7 SNIPS intents in the order of snips/intent_label.txt, without its first line, UNK (JointBERT's
# placeholder for an intent not seen in training; no utterance of the benchmark has it).
SNIPS_INTENT_LABELS = ["AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook",
                       "SearchCreativeWork", "SearchScreeningEvent"]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # "sentence" or "token"
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r}; choose one of {', '.join(TASK_KINDS)}")
        if len(self.labels) < 2:
            raise ValueError(f"task {self.name!r}: needs at least two labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name!r}: duplicate label names in {list(self.labels)}")
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_id(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(f"task {self.name!r}: label {label!r} is not in its label set {list(self.labels)}") from None

    def to_dict(self) -> dict:
        return {**asdict(self), "labels": list(self.labels)}


# The built-in tasks, by the name used on the command line.
BUILTIN_TASKS: dict[str, TaskSpec] = {
    "ner": TaskSpec("ner", "token", tuple(CONLL_NER_LABELS)),
    "sentiment": TaskSpec("sentiment", "sentence", tuple(SST2_LABELS)),
}

# Not built in (the CLI does not train it): the task notebook 05 adds to a trained model.
SNIPS_INTENT_TASK = TaskSpec("intent", "sentence", tuple(SNIPS_INTENT_LABELS))


def get_task(name: str) -> TaskSpec:
    if name not in BUILTIN_TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(BUILTIN_TASKS)}")
    return BUILTIN_TASKS[name]
