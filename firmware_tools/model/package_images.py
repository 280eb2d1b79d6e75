"""Images that ship inside Debian packages the model build downloads but never installs.

Game packages carry in-game screenshots and level shots: frames of real 3D game engines
(textured geometry, mipmaps, lightmaps, fog), the kind of render that the generators in
scenes.py, renders.py and gl_scenes.py only imitate. Other packages carry camera
photographs (a photo manager's demo album). Each package's
.deb is fetched with `apt-get download PACKAGE=VERSION` and unpacked with `dpkg-deb -x`
under build/model/packages/ (fetch(), run by `make model`): nothing lands in the system,
and the version is pinned.

package_images.json names every file with the SHA-256 of its bytes, its package's role
(by whole package, as for every other source; all of them are held out today) and the
licence the package's Debian copyright file gives. Each file was checked by eye: for renders, a 3D-engine view
of a scene (no menus, maps, textures, logos or drawings); for photographs, a camera
photograph (no drawings, renders, scans or cut-outs). A path "archive!member" is a
member of a zip or pk3 archive inside the package. The hashes, checked on every load,
make the data exactly what was checked by eye, whatever mirror or architecture the .deb
came from; a damaged file sends its package back to be unpacked again.
"""

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

TABLE_FILE = Path(__file__).with_name("package_images.json")
PACKAGES_DIR = Path(__file__).resolve().parents[2] / "build" / "model" / "packages"
# package -> {"version", "class" (real or synthetic), "role", "what", "licence",
#             "files": {path inside the package: SHA-256 of its bytes}}
PACKAGES = json.loads(TABLE_FILE.read_text(encoding="utf-8"))


def _file_stem(package):
    """package_version as apt-get names the .deb (an epoch's colon written %3a)."""
    return f"{package}_{PACKAGES[package]['version'].replace(':', '%3a')}"


def _unpacked(package, packages_dir):
    return packages_dir / _file_stem(package)


def missing(packages_dir=PACKAGES_DIR):
    """The packages of the table not unpacked yet."""
    return [package for package in PACKAGES if not (_unpacked(package, packages_dir) / ".unpacked").exists()]


def fetch(packages_dir=PACKAGES_DIR):
    """Download and unpack every package of the table that is not unpacked yet."""
    debs = packages_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for package in missing(packages_dir):
        version = PACKAGES[package]["version"]
        pattern = f"{_file_stem(package)}_*.deb"
        if not list(debs.glob(pattern)):
            print(f"downloading Debian package {package} {version}", flush=True)
            if subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=debs).returncode != 0:
                raise SystemExit(f"apt-get download {package}={version} failed: the package lists may be stale "
                                 "(run `sudo apt-get update`; `make model` does) or this version has left the archive")
        target = _unpacked(package, packages_dir)
        deb = sorted(debs.glob(pattern))[0]
        # Unpacked into a fresh folder and marked done last: an interrupted run starts it again.
        shutil.rmtree(target, ignore_errors=True)
        unpack = subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], capture_output=True, text=True)
        if unpack.returncode != 0:
            # A truncated or corrupt .deb is never trusted again: the next run downloads it anew.
            deb.unlink()
            shutil.rmtree(target, ignore_errors=True)
            raise SystemExit(f"{deb.name} could not be unpacked ({unpack.stderr.strip()[:200]}); it was deleted, "
                             "run `make model` again to download it anew")
        (target / ".unpacked").write_text(version)


def _read_bytes(root, path):
    if "!" in path:
        archive, member = path.split("!", 1)
        with zipfile.ZipFile(root / archive) as bundle:
            return bundle.read(member)
    return (root / path).read_bytes()


def _rgb(image):
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Level shots are opaque; an alpha channel, where one exists, is flattened on black.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def load(image_class, role, packages_dir=PACKAGES_DIR):
    """[(f"{package}/{file}", RGB array)] of the packages of this class and role."""
    images = []
    for package, entry in PACKAGES.items():
        if entry["class"] != image_class or entry["role"] != role:
            continue
        root = _unpacked(package, packages_dir)
        if not (root / ".unpacked").exists():
            raise SystemExit(f"Debian package {package} {entry['version']} is not unpacked under {packages_dir}; "
                             "run `make model`, which downloads and unpacks it")
        for path, sha256 in entry["files"].items():
            try:
                data = _read_bytes(root, path)
                if hashlib.sha256(data).hexdigest() != sha256:
                    raise ValueError("its SHA-256 is not the one package_images.json records")
                images.append((f"{package}/{path}", _rgb(Image.open(io.BytesIO(data)))))
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
                # Unpacked again on the next run rather than trusted as it is.
                (root / ".unpacked").unlink(missing_ok=True)
                raise SystemExit(f"{package}/{path} under {packages_dir} is missing or damaged ({exc}); "
                                 "run `make model` again, which unpacks the package anew") from None
    return images


def sources():
    """The card's source rows for these packages."""
    return [{"class": entry["class"], "role": entry["role"], "package": f"Debian {package} {entry['version']}",
             "files": f"{entry['what']}; listed in firmware_tools/model/package_images.json",
             "count": len(entry["files"]), "licence": entry["licence"]}
            for package, entry in PACKAGES.items()]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Download (apt-get download) and unpack (dpkg-deb -x) the Debian "
                                     "packages whose images the model build uses, under build/model/packages/.")
    parser.add_argument("--missing", action="store_true",
                        help="only list the packages not unpacked yet; exit 1 if there are any")
    args = parser.parse_args(argv)
    if args.missing:
        absent = missing()
        print("\n".join(absent))
        sys.exit(1 if absent else 0)
    fetch()
    print(f"{len(PACKAGES)} Debian packages unpacked under {PACKAGES_DIR}")


if __name__ == "__main__":
    main()
