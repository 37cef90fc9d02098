"""User-facing errors: one clear line, no traceback wall."""

__all__ = ["WsolError"]


class WsolError(Exception):
    """A problem with the user's input (config, data, model) that the CLI reports in one line."""
