"""driftscope core library: model runtime, SAEs, attribution and diagnosis.

This package imports neither the web API (`api`) nor the queue (`workers`).
"""

from diagnostics.errors import DriftscopeError, ModelLoadError, SaeFormatError

__all__ = ["DriftscopeError", "ModelLoadError", "SaeFormatError"]
