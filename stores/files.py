"""File helpers every store shares: atomic replacement and content hashes."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

__all__ = ["atomic_write", "sha256_file"]


def atomic_write(path: Path, content: bytes | str) -> None:
    """Replace `path` by `content` so readers see either the old or the new file, never a torn one."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    # The temp file lives in the target directory: os.replace is only atomic within one file system. It is
    # created with mode 0o666 less the umask, as open() would (mkstemp's 0o600 would hide reports from the group).
    temp_name = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
