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
CURVE_THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(4, 20)) + (0.97, 0.99)


def flag_scores(probabilities, label_names):
    """The score the policy compares with its threshold: the highest probability among
    the classes it acts on, rounded as the device rounds it (device.core.policy.decide)."""
    acted_on = [label_names.index(name) for name in CLASS_RULES if name in label_names]
    return np.round(np.asarray(probabilities)[:, acted_on], 4).max(axis=1)


def flagged_rates(probabilities, true_labels, label_names, threshold):
    """Per true class, the share of frames the policy would flag as suspected (Label 3)
    if they came in declared as real captures: P(class) >= threshold for a class the
    policy acts on. For `real` this is the false-positive rate the device ships with."""
    flagged = flag_scores(probabilities, list(label_names)) >= threshold
    true_labels = np.asarray(true_labels)
    return {name: float(flagged[true_labels == i].mean()) for i, name in enumerate(label_names)
            if (true_labels == i).any()}


def evaluate(probabilities, true_labels, label_names, default_threshold, thresholds=CARD_THRESHOLDS):
    """The card's held-out metrics from class probabilities (N x classes)."""
    probabilities = np.asarray(probabilities, np.float64)
    true_labels = np.asarray(true_labels)
    label_names = list(label_names)
    predicted = probabilities.argmax(axis=1)
    index = {name: i for i, name in enumerate(label_names)}
    real, synthetic, screen = index["real"], index["synthetic"], index["screen"]
    not_real = 1.0 - probabilities[:, real]
    flag = flag_scores(probabilities, label_names)

    def real_vs(other, score):
        chosen = np.isin(true_labels, [real, other])
        return roc_auc(score[chosen], true_labels[chosen] == other)

    return {
        "n_examples": int(len(true_labels)),
        "accuracy": float((predicted == true_labels).mean()),
        "confusion_matrix": confusion_matrix(true_labels, predicted, len(label_names)).tolist(),
        # Real photographs against renders, scored by P(synthetic) + P(screen) = 1 - P(real).
        "roc_auc_real_vs_synthetic": real_vs(synthetic, not_real),
        # The same, scored as the policy scores: max(P(synthetic), P(screen)).
        "roc_auc_real_vs_synthetic_policy_score": real_vs(synthetic, flag),
        "roc_auc_real_vs_screen": real_vs(screen, not_real),
        "roc_auc_real_vs_not_real": roc_auc(not_real, true_labels != real),
        "roc_auc_one_vs_rest": {
            name: roc_auc(probabilities[:, i], true_labels == i) for i, name in enumerate(label_names)
        },
        "default_threshold": default_threshold,
        "flagged_at_threshold": {
            str(t): flagged_rates(probabilities, true_labels, label_names, t)
            for t in sorted(set(thresholds) | {default_threshold})
        },
    }


def threshold_curve(probabilities, true_labels, label_names, thresholds=CURVE_THRESHOLDS):
    """The calibration curve: share of each class flagged, threshold by threshold."""
    return [{"threshold": t, **flagged_rates(probabilities, true_labels, label_names, t)} for t in thresholds]


def perturbation_table(predict, items, true_labels, label_names, threshold, names=None):
    """Metrics under each perturbation of firmware_tools.model.perturbations.

    predict: items (M x N x size x size x 3) -> probabilities (M x classes).
    "renders perturbed" is the forger's case (a render dressed up, real photographs as
    they are); "all perturbed" is the channel's (every frame went through it).
    """
    from .perturbations import PERTURBATIONS, perturb

    true_labels = np.asarray(true_labels)
    label_names = list(label_names)
    real, synthetic, screen = (label_names.index(n) for n in ("real", "synthetic", "screen"))
    clean = np.asarray(predict(items))
    table = {}
    for name, (description, _) in PERTURBATIONS.items():
        if names is not None and name not in names:
            continue
        perturbed = clean if name == "none" else np.asarray(predict(perturb(items, name)))
        is_render = true_labels == synthetic
        forged = np.where(is_render[:, None], perturbed, clean)
        chosen = np.isin(true_labels, [real, synthetic])
        flagged_all = flagged_rates(perturbed, true_labels, label_names, threshold)
        table[name] = {
            "description": description,
            "renders_perturbed": {
                "roc_auc_real_vs_synthetic": roc_auc(1 - forged[chosen, real], true_labels[chosen] == synthetic),
                "renders_flagged": flagged_rates(forged, true_labels, label_names, threshold)["synthetic"],
            },
            "all_perturbed": {
                "roc_auc_real_vs_synthetic": roc_auc(1 - perturbed[chosen, real], true_labels[chosen] == synthetic),
                "roc_auc_real_vs_screen": roc_auc(
                    1 - perturbed[np.isin(true_labels, [real, screen]), real],
                    true_labels[np.isin(true_labels, [real, screen])] == screen),
                "flagged": flagged_all,
            },
        }
    return table
