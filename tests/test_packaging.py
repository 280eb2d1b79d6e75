"""The distribution installs like a well-kept tool: one `synthseal` namespace, a host
side without the device's TFLite runtime, and the shipped model and font found in
every install form. Real builds (wheel and sdist) and real, fresh virtual environments;
pip may take packages from its cache or the package index."""

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TFLITE_MODULES = ("tflite_runtime", "ai_edge_litert", "tensorflow")


def _run(argv, **kwargs):
    kwargs.setdefault("timeout", 600)
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, "%s\n%s\n%s" % (argv, result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """The sdist, and the wheel built from that sdist (so the sdist is proven complete)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT])
    wheels, sdists = list(out.glob("synthseal-*.whl")), list(out.glob("synthseal-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _fresh_venv(directory, python=None):
    """A virtual environment that sees nothing of the checkout or the test venv."""
    if python is None:
        venv.EnvBuilder(with_pip=True).create(directory)
    else:
        _run([python, "-m", "venv", directory])
    return directory / "bin" / "python"


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def _newer_python():
    """A CPython newer than 3.11 on this machine, if one is installed (pyenv counts)."""
    candidates = [shutil.which(name) for name in ("python3.13", "python3.12")]
    if shutil.which("pyenv"):
        versions = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True).stdout.split()
        for version in sorted(versions, reverse=True):
            if version[:4] in ("3.12", "3.13"):
                prefix = subprocess.run(["pyenv", "prefix", version], capture_output=True, text=True).stdout.strip()
                candidates.append(os.path.join(prefix, "bin", "python3"))
    for exe in filter(None, candidates):
        probe = subprocess.run([exe, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return exe
    return None


def test_wheel_and_sdist_hold_one_top_level_package_and_the_licences(dists):
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = wheel.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        top_level = {n.split("/")[0] for n in names} - {dist_info}
        assert top_level == {"synthseal"}, top_level
        for path in ("synthseal/device/core/framing.py", "synthseal/host/verify.py",
                     "synthseal/firmware_tools/bench.py", "synthseal/models/synthseal_scene_int8.tflite",
                     "synthseal/models/labels.txt", "synthseal/device/fonts/NotoSansCJKsc-Bold-label-subset.otf"):
            assert path in names, path
        metadata = wheel.read(dist_info + "/METADATA").decode()
        assert "License-Expression: Apache-2.0 AND OFL-1.1" in metadata
        assert {dist_info + "/licenses/LICENSE", dist_info + "/licenses/device/fonts/OFL.txt"} <= set(names)
        # The device's runtime is an extra, never a requirement of the host tool.
        requirements = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
        for line in requirements:
            if any(m.replace("_", "-") in line for m in TFLITE_MODULES):
                assert "extra ==" in line, line
        assert any("tflite-runtime" in line and 'extra == "device"' in line for line in requirements)
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    # The sdist carries what `make test` needs, so its tests run where it is unpacked.
    import tarfile
    with tarfile.open(dists["sdist"]) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("tests/conftest.py", "tests/micropython/run.mjs", "tests/data_classifier/heldout_eval.npz",
                   "docs/PROTOCOL.md", "Makefile", "package-lock.json", "device/deploy/synthseal-agent.service"):
        assert needed in members, needed
    assert not any("__pycache__" in name or name.startswith("build/") for name in members)


@pytest.fixture(scope="module")
def sealed_file(tmp_path_factory, vendor_ca):
    from conftest import make_device
    from synthseal.device.camera import FakeCamera
    from synthseal.device.seal import Sealer
    base = tmp_path_factory.mktemp("packaging-sealed")
    state = make_device(base / "device", vendor_ca)
    result = Sealer(state, lab=True).seal(FakeCamera(320, 240, seed=3).capture_array(), "rig", base / "out")
    anchor = base / "root.pem"
    anchor.write_text(vendor_ca[1])
    return Path(result["path"]), anchor


def _verify_with(python, sealed_file, cwd):
    path, anchor = sealed_file
    scripts = Path(python).parent
    _run([scripts / "synthseal-host", "--version"], cwd=cwd, env=_clean_env())
    result = subprocess.run([str(scripts / "synthseal-host"), "verify", "--trust-anchor", str(anchor), "--json",
                             str(path)], capture_output=True, text=True, cwd=cwd, env=_clean_env(), timeout=120)
    report = json.loads(result.stdout)["reports"][0]
    assert report["c2pa_state"] == "Trusted" and report["label"] == "1", report
    assert [c["check"] for c in report["checks"] if c["status"] not in ("pass", "warn")] == ["log", "revocation"]
    assert result.returncode == 3, result.stderr  # incomplete: no --db or --crl given


def test_host_side_installs_without_the_tflite_runtime_and_verifies(dists, sealed_file, tmp_path):
    """On Python 3.11 always; also on the newest CPython 3.12+ this machine has."""
    pythons = [None] + ([_newer_python()] if _newer_python() else [])
    for index, python in enumerate(pythons):
        env_python = _fresh_venv(tmp_path / ("host%d" % index), python)
        _run([env_python, "-m", "pip", "install", "-q", dists["wheel"]], env=_clean_env())
        absent = _run([env_python, "-c", "import importlib.util as u; print([m for m in %r if u.find_spec(m)])"
                       % (TFLITE_MODULES,)], cwd=tmp_path, env=_clean_env())
        assert absent.stdout.strip() == "[]", absent.stdout
        _verify_with(env_python, sealed_file, cwd=tmp_path)


# Run from outside the checkout: the device must find the shipped model and font in its
# own installation, and classify a frame with them.
_DEVICE_PROBE = """
import json, sys
import numpy as np
import synthseal
from synthseal.device import classifier, explicit_label
from synthseal.device.core import policy
c = classifier.Classifier(required_labels=policy.CLASS_RULES)
scores = c.classify(np.zeros((480, 640, 3), np.uint8))
print(json.dumps({"package": synthseal.__file__, "model": str(classifier.DEFAULT_MODEL),
                  "font": str(explicit_label.FONT_PATH), "font_exists": explicit_label.FONT_PATH.is_file(),
                  "classes": sorted(scores)}))
"""


def test_device_extra_finds_its_model_and_font_outside_the_checkout(dists, sealed_file, tmp_path):
    env_python = _fresh_venv(tmp_path / "device")
    _run([env_python, "-m", "pip", "install", "-q", "%s[device]" % dists["wheel"]], env=_clean_env())
    _run([env_python.parent / "synthseal-device", "--version"], cwd=tmp_path, env=_clean_env())
    found = json.loads(_run([env_python, "-c", _DEVICE_PROBE], cwd=tmp_path, env=_clean_env()).stdout)
    venv_root = str(tmp_path / "device")
    for key in ("package", "model", "font"):
        assert found[key].startswith(venv_root), found
    assert found["font_exists"] and set(found["classes"]) >= set(("real", "synthetic", "screen"))
    _verify_with(env_python, sealed_file, cwd=tmp_path)


# Only the lookups, so that it runs on an interpreter without numpy or c2pa installed.
_RESOURCE_PROBE = """
import json
import synthseal.models as m
from importlib.resources import files
font = files("synthseal.device") / "fonts" / "NotoSansCJKsc-Bold-label-subset.otf"
print(json.dumps({"model": str(m.SHIPPED_MODEL), "model_exists": m.SHIPPED_MODEL.is_file(),
                  "labels_exist": m.SHIPPED_LABELS.is_file(), "font_exists": font.is_file()}))
"""


@pytest.mark.parametrize("form", ["user", "system"])
def test_shipped_files_are_found_in_user_and_system_installs(dists, tmp_path, form):
    """`pip install --user` (a user site outside any venv) and a plain install into a
    site directory of the interpreter (here a --target folder standing in for it)."""
    base_python = getattr(sys, "_base_executable", sys.executable)
    if form == "user":
        # Where `pip install --user` puts packages for the base interpreter (the base
        # interpreter may have no pip of its own, so this venv's pip writes there).
        env = _clean_env(PYTHONUSERBASE=str(tmp_path / "userbase"))
        user_site = _run([base_python, "-c", "import site; print(site.getusersitepackages())"], env=env).stdout.strip()
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", user_site, dists["wheel"]],
             env=_clean_env())
        where = str(tmp_path / "userbase")
    else:
        env = _clean_env(PYTHONPATH=str(tmp_path / "site"))
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", tmp_path / "site",
              dists["wheel"]], env=_clean_env())
        where = str(tmp_path / "site")
    found = json.loads(_run([base_python, "-c", _RESOURCE_PROBE], cwd=tmp_path, env=env).stdout)
    assert found["model"].startswith(where), found
    assert found["model_exists"] and found["labels_exist"] and found["font_exists"], found


def test_a_missing_model_names_the_model_option(tmp_path):
    from synthseal.device.classifier import Classifier, ClassifierError
    with pytest.raises(ClassifierError, match="--model PATH"):
        Classifier(model_path=tmp_path / "absent.tflite")
