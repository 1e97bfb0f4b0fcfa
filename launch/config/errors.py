"""The one error a bad configuration raises: reported as one line, before any process starts.

Its own module so that every part can raise it without importing the checks."""


class ConfigError(ValueError):
    """A configuration problem, reported as one line before any process starts."""
