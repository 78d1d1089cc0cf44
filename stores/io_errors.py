"""Which file errors a retry may heal: one classification for every task that writes files.

A retry comes seconds later (execution.io_retry_delays, 30 s in all at most). That can outlast a full disk
being cleaned up, an NFS server failing over, an interrupted call or a lock another process holds; it cannot
outlast a read-only mount, a missing permission, a device that is not there or a path that names the wrong
thing. Those fail at once, with the error that names them, instead of after every retry.
"""

from __future__ import annotations

import errno
import re
import sqlite3

__all__ = ["PERMANENT_ERRNOS", "TRANSIENT_SQLITE_CODES", "os_error_code", "transient_file_error",
           "transient_os_error"]

PERMANENT_ERRNOS: frozenset[int] = frozenset({
    errno.EROFS,  # a read-only file system: remounting is someone's decision, not a matter of seconds
    errno.EACCES, errno.EPERM,  # permissions and ownership
    errno.ENODEV, errno.ENXIO,  # no such device: an unplugged or unmapped volume
    errno.ENOENT,  # the stores create their folders: a missing one was removed or the path is wrong
    errno.ENOTDIR, errno.EISDIR, errno.EEXIST,  # a file where a folder belongs, or the reverse
    errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL,  # a path or an argument the file system refuses
    errno.EXDEV,  # a rename across file systems: the folders are configured on different mounts
    errno.EFBIG,  # a file larger than the file system allows (a quota is EDQUOT)
    errno.EMLINK,  # too many links to one folder
    errno.EBADF,  # a closed or wrong file handle: a bug
    errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP,  # an operation the file system does not support (flock)
})
"""errnos a retry cannot heal. Retried, among others: ENOSPC and EDQUOT (a full disk or quota, freed by a
cleanup), EIO, EAGAIN, EINTR, EBUSY, ETIMEDOUT, ESTALE (an NFS handle after a failover), ENOLCK, EMFILE and
ENFILE (open files of other tasks), ENOMEM, ENOTEMPTY (a snapshot another writer renamed into place first)."""

_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
"""how Rust's std::io::Error names its errno: polars writes file errors as OSError(message) without one."""

_PERMANENT_TYPES = (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)
"""OSError subclasses Python raises only for permanent errnos, for an error that carries no errno."""

TRANSIENT_SQLITE_CODES: frozenset[int] = frozenset({sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL})
"""SQLite's primary result codes for a failed read or write and a full disk: its ENOSPC and EIO. The others are
about the database or the statement (READONLY, CANTOPEN, PERM, CORRUPT, NOTADB, a constraint) or were already
waited out: BUSY and LOCKED come after the connection's busy timeout."""


def os_error_code(error: BaseException) -> int | None:
    """The errno of `error`: its own, else the one Rust's message format names (polars raises OSError and
    ComputeError with the errno in the message only); None when neither says."""
    code = getattr(error, "errno", None)
    if isinstance(code, int):
        return code
    found = _RUST_OS_ERROR.search(str(error))
    return int(found.group(1)) if found else None


def transient_os_error(error: OSError) -> bool:
    """Whether a retry may heal `error`: any errno but the permanent ones (PERMANENT_ERRNOS).

    An errno on no list, and an error without one, are retried: the retries are few and bounded
    (execution.io_retry_delays wait 30 s in all at most), so retrying an error that will not heal costs
    those seconds, while failing one that would have healed costs the run.
    """
    code = os_error_code(error)
    if code is None:
        return not isinstance(error, _PERMANENT_TYPES)
    return code not in PERMANENT_ERRNOS


def transient_file_error(error: BaseException) -> bool:
    """Whether a retry may heal `error`, raised while reading or writing a store's files: a transient OSError
    (`transient_os_error`) or an SQLite error of a failed read or write or a full disk (TRANSIENT_SQLITE_CODES).
    Anything else (a check that failed, a bug) is not a file system's fault."""
    if isinstance(error, OSError):
        return transient_os_error(error)
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)  # an extended code: the primary one is its low byte
        return isinstance(code, int) and (code & 0xFF) in TRANSIENT_SQLITE_CODES
    return False
