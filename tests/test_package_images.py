"""The table of images taken from Debian packages (firmware_tools/model/package_images.json):
every package has one class and one role, none of them reaches training, and a damaged
download or file is refused and fetched again, never trusted."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from synthseal.firmware_tools.model import dataset, package_images

PACKAGES = package_images.PACKAGES
REPO = Path(__file__).resolve().parents[1]
METRICS = json.loads((REPO / "models" / "synthseal_scene_metrics.json").read_text(encoding="utf-8"))


def test_every_package_has_a_known_class_role_version_licence_and_hashed_files():
    for package, entry in PACKAGES.items():
        assert entry["class"] in ("real", "synthetic"), package
        assert entry["version"] and entry["licence"] and entry["what"], package
        assert entry["files"] and all(re.fullmatch("[0-9a-f]{64}", h) for h in entry["files"].values()), package


def test_packages_are_held_out_whole_and_no_other_source_names_them():
    """The shipped model trained on none of them: each is held out as a whole package,
    and no training or calibration source is the same package."""
    assert {entry["role"] for entry in PACKAGES.values()} == {"held out"}
    others = " ".join(row["package"] + " " + row["files"] for row in dataset.SOURCES if row["role"] != "held out")
    for package in PACKAGES:
        assert package not in others


def test_the_card_lists_the_packages_as_the_table_states_them():
    assert [row for row in METRICS["sources"] if row["package"].startswith("Debian ")
            and row["package"].split()[1] in PACKAGES] == package_images.sources()


def test_the_heldout_set_holds_every_file_of_every_package():
    with np.load(REPO / "tests" / "data_classifier" / "heldout_eval.npz") as data:
        sources = list(data["sources"])
    for package, entry in PACKAGES.items():
        if entry["class"] == "synthetic":
            assert sources.count(f"game:{package}") == len(entry["files"]), package
        else:
            names = [source for source in sources if source.startswith(f"{package}:")]
            assert len(names) == dataset.HELDOUT_CROPS_PER_PHOTO * len(entry["files"]), package


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """One package of one PNG, unpacked under tmp_path as fetch() leaves it."""
    from PIL import Image

    root = tmp_path / "demo-photos_1.0"
    (root / "usr").mkdir(parents=True)
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(root / "usr" / "a.png")
    digest = hashlib.sha256((root / "usr" / "a.png").read_bytes()).hexdigest()
    (root / ".unpacked").write_text("1.0")
    table = {"demo-photos": {"version": "1.0", "class": "real", "role": "held out", "what": "w", "licence": "l",
                             "files": {"usr/a.png": digest}}}
    monkeypatch.setattr(package_images, "PACKAGES", table)
    return root


def test_an_unpacked_package_loads_with_its_hashes(tmp_path, fake_package):
    (name, image), = package_images.load("real", "held out", packages_dir=tmp_path)
    assert name == "demo-photos/usr/a.png" and image.shape == (200, 300, 3)


def test_a_changed_file_is_refused_and_its_package_unpacked_again(tmp_path, fake_package):
    from PIL import Image

    Image.fromarray(np.full((200, 300, 3), 91, np.uint8)).save(fake_package / "usr" / "a.png")
    with pytest.raises(SystemExit, match="SHA-256"):
        package_images.load("real", "held out", packages_dir=tmp_path)
    assert package_images.missing(tmp_path) == ["demo-photos"]


def test_a_corrupt_deb_is_deleted_not_trusted(tmp_path, fake_package):
    (fake_package / ".unpacked").unlink()
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "demo-photos_1.0_all.deb").write_bytes(b"!<arch>\ntruncated")
    with pytest.raises(SystemExit, match="download it anew"):
        package_images.fetch(packages_dir=tmp_path)
    assert not list(debs.iterdir()) and not fake_package.exists()


def test_a_package_not_unpacked_is_missing_and_loading_it_is_a_clear_error(tmp_path):
    assert package_images.missing(tmp_path) == list(PACKAGES)
    with pytest.raises(SystemExit, match="make model"):
        package_images.load("synthetic", "held out", packages_dir=tmp_path)
