"""The policy table is data: the README documents it, the code applies it, and the
two must not drift apart."""

import re
from pathlib import Path

import pytest

from device.core import policy

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_policy_rows():
    section = README.read_text().split("## Labeling policy", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*`(\w+)`\s*\|(.*)\|\s*$", line)
        if match:
            cells = [c.strip().strip("`") for c in match.group(2).split("|")]
            label, explicit, dst, art17 = cells
            rows[match.group(1)] = {"label": None if label == "—" else label, "explicit": explicit == "yes",
                                    "dst": dst, "art17": None if art17 == "—" else art17}
    return rows


def test_readme_documents_exactly_the_policy_table():
    assert readme_policy_rows() == policy.POLICY_TABLE


@pytest.mark.parametrize("source", policy.DECLARED_SOURCES)
def test_decision_carries_the_row_and_the_rule(source):
    decision = policy.decide(source)
    assert decision["rule"] == source and decision["source"] == source
    for key, value in policy.POLICY_TABLE[source].items():
        assert decision[key] == value


def test_an_undeclared_source_is_refused():
    with pytest.raises(policy.PolicyError, match="unknown declared source"):
        policy.decide("scanner")


def test_only_ai_content_gets_an_explicit_label():
    for row in policy.POLICY_TABLE.values():
        assert row["explicit"] == (row["label"] == "1")
