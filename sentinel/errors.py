"""User-facing errors: one readable line, non-zero exit, no traceback."""


class SentinelError(Exception):
    """A problem with the user's input or environment that the CLI reports as one line."""


class LayoutError(SentinelError):
    """A per-layer head layout that breaks the contract of docs/FORMAT.md."""
