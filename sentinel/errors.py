"""User-facing errors: one readable line, non-zero exit, no traceback."""


class SentinelError(Exception):
    """A problem with the user's input or environment that the CLI reports as one line."""


class LayoutError(SentinelError):
    """A per-layer head layout that breaks the contract of docs/FORMAT.md."""


def os_error(e: OSError, path) -> SentinelError:
    """An OSError a user can act on, as one line naming the cause and the path (disk full, read-only, a file)."""
    import errno
    import shutil
    from pathlib import Path

    path = Path(path)
    where = Path(e.filename) if getattr(e, "filename", None) else path
    code = e.errno
    if code is None and "requested and" in str(e):  # numpy's tofile on a full disk sets no errno
        try:
            code = errno.ENOSPC if shutil.disk_usage(path.parent).free < 2**20 else None
        except OSError:
            code = None
    if code in (errno.ENOSPC, errno.EDQUOT):
        return SentinelError(f"no space left on device ({path})")
    if code == errno.EROFS:
        return SentinelError(f"read-only folder {where.parent if where == path else where} (cannot write {path})")
    if code in (errno.EACCES, errno.EPERM):
        return SentinelError(f"permission denied ({where})")
    if code in (errno.ENOTDIR, errno.EEXIST) and where != path:
        return SentinelError(f"cannot write {path}: {where} is a file, not a folder")
    return SentinelError(f"cannot write {path} ({e.strerror or e})")
