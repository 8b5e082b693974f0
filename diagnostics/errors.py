"""Errors that carry a message meant for a person, not a traceback."""


class DriftscopeError(Exception):
    """Base class: the CLI prints the message and exits with `exit_code`."""

    exit_code = 1


class ModelLoadError(DriftscopeError):
    """A language model could not be found or loaded."""

    exit_code = 3


class SaeFormatError(DriftscopeError):
    """An SAE on disk is missing, malformed, or in a format we refuse (pickles)."""

    exit_code = 4


class EvalLogError(DriftscopeError):
    """An eval-run log (e.g. an lm-evaluation-harness samples file) is missing or malformed, or
    lacks the filter or metric asked for."""

    exit_code = 7
