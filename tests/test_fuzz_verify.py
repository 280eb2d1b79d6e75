"""Fuzzing `verify` in the suite (bounded): sealed files with bits flipped, cut or
spliced, hostile XMP labels and manifests signed by a real device key around hostile
assertions all come back as reports that name what is wrong, never as an exception.
The same harness runs for as long as you like under atheris: tests/fuzz/fuzz_verify.py
(`make fuzz`)."""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from synthseal.device.seal import C2PA_ASSERTION_LABEL
from tests.fuzz.verify_harness import flip_bits, make_bench, one_input

_BENCH = {}


@pytest.fixture(scope="module")
def bench():
    if "b" not in _BENCH:
        _BENCH["b"] = make_bench()
    return _BENCH["b"]


_FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)


@_FUZZ
@given(seed=st.integers(0, 1), positions=st.lists(st.integers(0, 2**40), min_size=1, max_size=8))
def test_sealed_files_with_flipped_bits_give_reports(bench, seed, positions):
    report = one_input(bench, flip_bits(bench.seeds[seed], positions))
    assert report["result"] in ("failed", "incomplete")


@_FUZZ
@given(seed=st.integers(0, 1), cut=st.integers(0, 2**31), splice=st.binary(max_size=64))
def test_sealed_files_cut_or_spliced_give_reports(bench, seed, cut, splice):
    data = bench.seeds[seed]
    at = cut % len(data)
    report = one_input(bench, data[:at] + splice + data[at + len(splice) // 2:])
    assert report["result"] in ("failed", "incomplete")


@_FUZZ
@given(text=st.text(max_size=400) | st.sampled_from(["[" * 60000, "{" * 30000, '{"AIGC":' * 5000]))
def test_hostile_xmp_labels_give_reports(bench, text):
    report = one_input(bench, bench.with_xmp_label(text))
    assert report["result"] == "failed"  # a JPEG without Content Credentials never verifies


# Shapes a manifest signed by a real key may take: the seal assertion and c2pa.actions
# with any JSON where objects, lists and strings are expected.
_seal_data = st.one_of(
    st.dictionaries(st.sampled_from(["aigc", "produce_id", "device_serial", "decision", "explicit_label", "log_seq"]),
                    json_values, max_size=6),
    st.fixed_dictionaries({"decision": st.dictionaries(
        st.sampled_from(["rule", "label", "explicit", "dst", "source", "scores", "threshold", "origin", "classifier",
                         "lab", "art17"]), json_values, max_size=8)}),
)
_actions = st.fixed_dictionaries({"actions": st.lists(st.dictionaries(
    st.sampled_from(["action", "digitalSourceType", "when"]), json_values, max_size=3), max_size=3) | json_values})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(seal=_seal_data, actions=_actions)
def test_signed_manifests_with_hostile_assertions_give_reports(bench, seal, actions):
    try:
        data = bench.signed([{"label": "c2pa.actions", "data": actions}, bench.seal_assertion(seal)])
    except Exception:  # the C2PA library refuses some shapes at signing: nothing to verify then
        return
    report = one_input(bench, data)
    assert report["result"] in ("failed", "incomplete")


def test_a_seal_assertion_that_is_a_list_is_a_policy_failure(bench):
    data = bench.signed([{"label": C2PA_ASSERTION_LABEL, "data": {"decision": [["rule"]]}}])
    report = one_input(bench, data)
    failed = {c["check"]: c["detail"] for c in report["checks"] if c["status"] == "fail"}
    assert "no decision object" in failed["policy"]


def test_an_xmp_label_of_60000_brackets_is_one_line_in_the_report(bench):
    report = one_input(bench, bench.with_xmp_label("[" * 60000))
    (aigc,) = [c for c in report["checks"] if c["check"] == "aigc"]
    assert aigc["status"] == "fail" and "not valid JSON" in aigc["detail"]
