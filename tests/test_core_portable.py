"""The core stays MicroPython-portable: every module compiles with mpy-cross, and real
MicroPython (WebAssembly port under Node) computes the same frames, records, labels
and log answers as CPython."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_MODULES = sorted((ROOT / "device" / "core").glob("*.py"))
assert len(CORE_MODULES) >= 8, "the portable core went missing"
VECTORS = ROOT / "tests" / "micropython" / "core_vectors.py"


@pytest.mark.parametrize("module", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_compiles_with_mpy_cross(module, tmp_path):
    out = tmp_path / (module.stem + ".mpy")
    result = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(module)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


def test_core_imports_only_what_micropython_has():
    allowed = {"hashlib", "struct", "binascii", "json", "os"}
    for module in CORE_MODULES:
        for line in module.read_text().splitlines():
            words = line.split()
            if words[:1] == ["import"] or (words[:1] == ["from"] and not words[1].startswith(".")):
                assert words[1].split(".")[0] in allowed, "%s: %s" % (module.name, line)


def test_micropython_and_cpython_agree_on_every_core_result(tmp_path):
    node = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    assert node.exists(), "run `make setup` (npm ci) to install MicroPython"
    cpython = subprocess.run([sys.executable, str(VECTORS)], cwd=tmp_path,
                             capture_output=True, text=True, check=True)
    micropython = subprocess.run(["node", str(ROOT / "tests" / "micropython" / "run.mjs"), str(ROOT), str(VECTORS)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert micropython.returncode == 0, micropython.stderr
    ours, theirs = json.loads(cpython.stdout), json.loads(micropython.stdout.strip().splitlines()[-1])
    assert theirs == ours
    assert ours["frame_round_trip"] and ours["log_chain_ok"] and ours["jpeg_digest_stable"]
    assert ours["charset_rejected"] and ours["jpeg_xmp_found"] and ours["upload_stored"]
    assert ours["merkle_proofs_ok"]
