"""Fuzzing `verify` in the suite (bounded): sealed files with bits flipped, cut or
spliced, hostile XMP labels and manifests signed by a real device key around hostile
assertions all come back as reports that name what is wrong, never as an exception.
The same harness runs for as long as you like under atheris: tests/fuzz/fuzz_verify.py
(`make fuzz`)."""

import c2pa
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


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
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


# Shapes a manifest signed by a real key may take: the seal assertion with any JSON where
# objects, lists and strings are expected. c2pa.actions must keep the shape the C2PA
# library signs (it refuses others), with any text in its fields.
_seal_data = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(["aigc", "produce_id", "device_serial", "decision", "explicit_label", "log_seq"]),
                    json_values, max_size=6),
    st.fixed_dictionaries({"decision": st.dictionaries(
        st.sampled_from(["rule", "label", "explicit", "dst", "source", "scores", "threshold", "origin", "classifier",
                         "lab", "art17"]), json_values, max_size=8),
        "explicit_label": json_values}),
)
_created = st.fixed_dictionaries({"action": st.just("c2pa.created")}, optional={
    "digitalSourceType": st.text(max_size=80)
    | st.just("http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"),
    "when": st.text(max_size=40) | st.just("2026-01-01T00:00:00.000+00:00")})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(seal=_seal_data, created=st.none() | _created)
def test_signed_manifests_with_hostile_assertions_give_reports(bench, seal, created):
    assertions = [bench.seal_assertion(seal)]
    if created is not None:
        assertions.append({"label": "c2pa.actions", "data": {"actions": [created]}})
    try:
        data = bench.signed(assertions)
    except c2pa.C2paError:  # JSON the C2PA library will not sign: no file, nothing to verify
        return
    report = one_input(bench, data)
    assert report["result"] == "failed"  # not the device's own seal: never verified


def test_a_seal_assertion_that_is_a_list_is_a_policy_failure(bench):
    for data, reason in (([1, 2], "assertion is not a JSON object"), ({"decision": [["rule"]]}, "no decision object")):
        report = one_input(bench, bench.signed([{"label": C2PA_ASSERTION_LABEL, "data": data}]))
        failed = {c["check"]: c["detail"] for c in report["checks"] if c["status"] == "fail"}
        assert reason in failed["policy"]


def test_an_xmp_label_of_60000_brackets_is_one_line_in_the_report(bench):
    report = one_input(bench, bench.with_xmp_label("[" * 60000))
    (aigc,) = [c for c in report["checks"] if c["check"] == "aigc"]
    assert aigc["status"] == "fail" and "not valid JSON" in aigc["detail"]
