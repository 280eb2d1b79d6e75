"""atheris target: the frame reader, the message codec and the device's request
handler on arbitrary bytes (see harness.py for what must hold). Runs outside the
test suite, as long as you like:

    pip install atheris
    python tests/fuzz/fuzz_framing.py -max_total_time=600 -rss_limit_mb=1024

A crash, an assertion, a timeout (-timeout, default 1200 s per input: set -timeout=5)
or memory past -rss_limit_mb is a finding; atheris writes the input to crash-*.
"""

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from tests.fuzz.harness import make_endpoint, one_input

ENDPOINT = make_endpoint(tempfile.mkdtemp(prefix="synthseal-fuzz-"))


def test_one_input(data):
    fdp = atheris.FuzzedDataProvider(data)
    cuts = tuple(fdp.ConsumeIntInRange(1, 512) for _ in range(3))
    one_input(fdp.ConsumeBytes(fdp.remaining_bytes()), ENDPOINT, cuts)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
