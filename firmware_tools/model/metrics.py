"""Classification metrics in plain numpy, shared by the build (card) and the tests."""

import numpy as np

from ...device.core.policy import CLASS_RULES


def confusion_matrix(true_labels, predicted_labels, n_classes):
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (np.asarray(true_labels), np.asarray(predicted_labels)), 1)
    return matrix


def roc_auc(scores, is_positive):
    """Area under the ROC curve (Mann-Whitney U, ties count one half)."""
    scores = np.asarray(scores, np.float64)
    is_positive = np.asarray(is_positive, bool)
    positives, negatives = scores[is_positive], scores[~is_positive]
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("ROC-AUC needs at least one positive and one negative example")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # Average rank for tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    rank_sum = ranks[is_positive].sum()
    n_pos, n_neg = len(positives), len(negatives)
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


CARD_THRESHOLDS = (0.5, 0.8, 0.9, 0.95)


def flagged_rates(probabilities, true_labels, label_names, threshold):
    """Per true class, the share of frames the policy would flag as suspected (Label 3)
    if they came in declared as real captures: P(class) >= threshold for a class the
    policy acts on. For `real` this is the false-positive rate the device ships with."""
    acted_on = [label_names.index(name) for name in CLASS_RULES if name in label_names]
    # The device decides on scores rounded to 4 decimals (device.core.policy.decide).
    flagged = (np.round(probabilities[:, acted_on], 4) >= threshold).any(axis=1)
    return {name: float(flagged[true_labels == i].mean()) for i, name in enumerate(label_names)}


def evaluate(probabilities, true_labels, label_names, thresholds=CARD_THRESHOLDS):
    """The card's held-out metrics from class probabilities (N x classes)."""
    probabilities = np.asarray(probabilities, np.float64)
    true_labels = np.asarray(true_labels)
    predicted = probabilities.argmax(axis=1)
    index = {name: i for i, name in enumerate(label_names)}
    real, synthetic = index["real"], index["synthetic"]
    real_or_synthetic = np.isin(true_labels, [real, synthetic])
    return {
        "n_examples": int(len(true_labels)),
        "accuracy": float((predicted == true_labels).mean()),
        "confusion_matrix": confusion_matrix(true_labels, predicted, len(label_names)).tolist(),
        # Real photographs against renders, scored by P(synthetic).
        "roc_auc_real_vs_synthetic": roc_auc(
            probabilities[real_or_synthetic, synthetic], true_labels[real_or_synthetic] == synthetic
        ),
        # Real against anything else (synthetic or screen), scored by 1 - P(real).
        "roc_auc_real_vs_not_real": roc_auc(1.0 - probabilities[:, real], true_labels != real),
        "roc_auc_one_vs_rest": {
            name: roc_auc(probabilities[:, i], true_labels == i) for i, name in enumerate(label_names)
        },
        "flagged_at_threshold": {
            str(t): flagged_rates(probabilities, true_labels, list(label_names), t) for t in thresholds
        },
    }
