"""User-facing errors.

Every mistake a user can make (a bad config key or value, an unknown env, a missing or corrupt
checkpoint, ...) raises :class:`UserError` with a one-line message that says what is wrong and what
is valid. The CLI prints that line and exits non-zero, without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message is one line and is shown as is."""


class ConfigError(UserError):
    """An invalid configuration key or value."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or does not fit the run."""
