"""Writing files so that a power cut leaves the old version or the new one, never a
mix: one place for the device's state and the host's CA folder."""

import os
from pathlib import Path


def write_new(path, data, mode=0o644):
    """Create `path` (it must not exist), write and fsync it."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path):
    """Make the names in a folder (a rename, a new file) durable."""
    fd = os.open(str(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data, mode=0o644):
    """Write to a temporary beside `path`, fsync, rename over it, fsync the folder."""
    path = Path(path)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    write_new(tmp, data, mode)
    os.replace(tmp, path)
    fsync_dir(path.parent)
