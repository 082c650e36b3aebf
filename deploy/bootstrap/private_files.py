"""Files that hold secrets (the unseal key, AppRole secret ids): owner-only from the moment they exist."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

OWNER_ONLY_FILE = 0o600
OWNER_ONLY_DIR = 0o700


def make_private_dir(path: Path) -> Path:
    """Create path owner-only, and any missing parent too (existing directories are left as they are)."""
    missing = [directory for directory in (path, *path.parents) if not directory.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=OWNER_ONLY_DIR, exist_ok=True)
    return path


@contextmanager
def replacing_private_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write that atomically replaces path once the block ends without an error (nothing changes
    at path otherwise); created 0600, never wider, not even briefly."""
    make_private_dir(path.parent)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.unlink(missing_ok=True)
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY_FILE)
    try:
        with os.fdopen(descriptor, "wb") as staged:
            yield staged
            staged.flush()
            os.fsync(staged.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_private_file(path: Path, text: str) -> None:
    """Atomically replace path with text (replacing_private_file)."""
    with replacing_private_file(path) as staged:
        staged.write(text.encode())


def is_private(path: Path) -> bool:
    return path.stat().st_mode & 0o077 == 0
