"""atheris target: `verify` on arbitrary files (see verify_harness.py for what must
hold). Each input picks how its bytes become a file: as they are, as bit flips and a
splice on a sealed file, or as the TC260:AIGC label of a plain JPEG's XMP. Runs outside
the test suite, as long as you like (`make fuzz`, or):

    pip install atheris
    python tests/fuzz/fuzz_verify.py -max_total_time=600 -timeout=20 -rss_limit_mb=2048

A crash, an assertion (an exception escaping verify, a report outside the schema, the
verifier's last guard firing), a timeout or memory past -rss_limit_mb is a finding;
atheris writes the input to crash-*.
"""

import os
import sys

import atheris

with atheris.instrument_imports():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from tests.fuzz.verify_harness import flip_bits, make_bench, one_input

BENCH = make_bench()


def test_one_input(data):
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        one_input(BENCH, fdp.ConsumeBytes(fdp.remaining_bytes()))
    elif mode == 1:
        seed = BENCH.seeds[fdp.ConsumeIntInRange(0, len(BENCH.seeds) - 1)]
        flipped = flip_bits(seed, [fdp.ConsumeIntInRange(0, 2**40) for _ in range(fdp.ConsumeIntInRange(0, 8))])
        at = fdp.ConsumeIntInRange(0, len(flipped))
        one_input(BENCH, flipped[:at] + fdp.ConsumeBytes(fdp.remaining_bytes()) + flipped[at:])
    else:
        one_input(BENCH, BENCH.with_xmp_label(fdp.ConsumeUnicodeNoSurrogates(60000)))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
