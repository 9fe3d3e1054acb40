"""``tsn-train evaluate``: the mAP or accuracy of a score file against multi-label ground truth
(tsn_train/metrics.py has the maths; this reads the files, checks them against each other and
writes the per-class AP table and the precision-recall picture)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from tsn_core import interrupts
from tsn_core.lists import Known, read_multilabel_list

if TYPE_CHECKING:
    from .metrics import APResult

METRICS = ("activitynet", "thumos14", "accuracy")


class EvaluationError(ValueError):
    """The labels do not fit the score file (a video without a line, a label outside its classes,
    a class without a positive...); the message names the labels file and says why."""


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` found: the line to print and, for a mAP metric, the AP of every class
    (``result``) with what ``write`` needs."""

    line: str
    metric: str
    scores_file: Path
    classes: Optional[list[str]] = None
    labels: Optional[list[list[int]]] = None
    result: Optional[APResult] = None  # None for accuracy

    def write(self, out: Path) -> None:
        """OUT/per_class_ap.csv and OUT/pr_curve.png, both or neither begun (OSError if not)."""
        from .metrics import write_ap_csv
        from .pr_picture import write_pr_png

        out.mkdir(parents=True, exist_ok=True)
        with interrupts.deferred():
            write_ap_csv(self.result, self.classes, self.labels, out / "per_class_ap.csv")
            write_pr_png(self.result, out / "pr_curve.png", f"{self.metric}: {self.scores_file.name}",
                         self.classes)


def default_out(scores_file: Path, metric: str) -> Path:
    """The folder of a metric's files when none is given: SCORES without .npz, plus -METRIC."""
    return scores_file.with_name(f"{scores_file.stem}-{metric}")


def evaluate(scores_file: Path, labels_path: Path, metric: str) -> Evaluation:
    """Score ``scores_file`` (from ``test`` or ``fuse``) against ``labels_path`` ('video_id
    label[,label...]' per line) with ``metric``; probabilities are the softmax of the scores.
    Raises EvaluationError on labels that do not fit the score file."""
    from .metrics import activitynet_map, multilabel_accuracy, thumos14_map
    from .scores import Scores, softmax

    scores = Scores.load(scores_file)
    # every line must name exactly one video of the score file
    known = Known(set(scores.video_ids), str(scores_file), f"scores in {scores_file}")
    truth = {r.video_id: r.labels for r in read_multilabel_list(labels_path, known)}
    missing = [v for v in scores.video_ids if v not in truth]
    if missing:
        raise EvaluationError(f"{labels_path}: {len(missing)} videos of {scores_file} have no line "
                              f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})")
    labels = [truth[v] for v in scores.video_ids]
    num_classes = len(scores.classes)
    bad = sorted({c for labs in labels for c in labs if not 0 <= c < num_classes})
    if bad:
        raise EvaluationError(f"{labels_path}: labels {bad[:5]} are outside the {num_classes} "
                              f"classes of {scores_file}")
    probs = softmax(scores.scores)
    if metric == "accuracy":
        labelled = sum(bool(labs) for labs in labels)
        return Evaluation(f"accuracy: top-1 {multilabel_accuracy(probs, labels, 1):.2%}, top-5 "
                          f"{multilabel_accuracy(probs, labels, 5):.2%} over {labelled} labelled videos",
                          metric, scores_file)
    try:
        result = (activitynet_map if metric == "activitynet" else thumos14_map)(probs, labels)
    except ValueError as exc:
        raise EvaluationError(f"{labels_path}: {exc}") from None
    line = f"{metric} mAP {result.mean_ap:.4f} over {len(result.evaluated)} classes"
    if result.hit_at_k is not None:
        line += f", hit@{result.k} {result.hit_at_k:.4f}"
    line += f" ({len(labels)} videos, {sum(not labs for labs in labels)} background)"
    return Evaluation(line, metric, scores_file, scores.classes, labels, result)
