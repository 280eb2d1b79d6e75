"""The policy table is data: the README documents it, the code applies it, and the
two must not drift apart."""

import re
from pathlib import Path

import pytest

from synthseal.device.core import policy

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_policy_rows():
    section = README.read_text().split("## Labeling policy", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*`([\w-]+)`\s*\|(.*)\|\s*$", line)
        if match:
            cells = [c.strip().strip("`") for c in match.group(2).split("|")]
            _when, label, explicit, dst, art17 = cells
            rows[match.group(1)] = {"label": None if label == "—" else label, "explicit": explicit == "yes",
                                    "dst": dst, "art17": None if art17 == "—" else art17}
    return rows


def test_readme_documents_exactly_the_policy_table():
    assert readme_policy_rows() == policy.POLICY_TABLE


@pytest.mark.parametrize("source", policy.DECLARED_SOURCES)
def test_without_a_classifier_the_declared_source_is_the_rule(source):
    decision = policy.decide(source)
    assert decision["rule"] == source and decision["source"] == source
    for key, value in policy.POLICY_TABLE[source].items():
        assert decision[key] == value


SCORES_REAL = {"real": 0.9, "synthetic": 0.06, "screen": 0.04}


@pytest.mark.parametrize("scores,rule", [
    (SCORES_REAL, "capture"),
    ({"real": 0.0, "synthetic": policy.DEFAULT_THRESHOLD, "screen": 0.0}, "capture-synthetic"),
    ({"real": 0.0, "synthetic": 0.0, "screen": policy.DEFAULT_THRESHOLD}, "capture-screen"),
    ({"real": 0.3, "synthetic": round(policy.DEFAULT_THRESHOLD - 0.01, 4), "screen": 0.01}, "capture"),  # under the threshold
])
def test_classifier_verdicts_on_a_declared_capture(scores, rule):
    decision = policy.decide("capture", scores)
    assert decision["rule"] == rule
    assert decision["scores"] == scores


@pytest.mark.parametrize("source", ["rig", "composite"])
def test_a_declared_synthetic_source_keeps_label_1_whatever_the_model_says(source):
    decision = policy.decide(source, SCORES_REAL)
    assert decision["label"] == "1" and decision["rule"] == source


def test_a_classifier_failure_fails_closed_to_possibly_never_real():
    decision = policy.decide("capture", classifier_error="frame has shape (2, 2)")
    assert decision["rule"] == "capture-unclassified" and decision["label"] == "2"
    assert decision["classifier_error"]


def test_the_threshold_is_configurable():
    scores = {"real": 0.3, "synthetic": 0.69, "screen": 0.01}
    assert policy.decide("capture", scores, threshold=0.6)["rule"] == "capture-synthetic"


def test_an_undeclared_source_is_refused():
    with pytest.raises(policy.PolicyError, match="unknown declared source"):
        policy.decide("scanner")


def test_only_ai_content_gets_an_explicit_label():
    for row in policy.POLICY_TABLE.values():
        assert row["explicit"] == (row["label"] == "1")


@pytest.mark.parametrize("threshold", [0, 1.01, True, "0.8", None])
def test_decide_refuses_a_threshold_that_is_not_in_0_1(threshold):
    with pytest.raises(policy.PolicyError, match="threshold"):
        policy.decide("capture", {"real": 0.1, "synthetic": 0.9, "screen": 0.0}, threshold)


def test_decide_refuses_scores_without_the_policys_classes():
    # A renamed class must not read as score 0, i.e. as a real capture.
    with pytest.raises(policy.PolicyError, match=r"lack the policy's classes \['synthetic'\]"):
        policy.decide("capture", {"real": 0.1, "Synthetic": 0.9, "screen": 0.0})
