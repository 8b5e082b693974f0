"""A transcoder set ready to trace failures: the replacement model is loaded on first use and
kept, so a batch or an audit loads it once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from diagnostics.language_model import LanguageModel
from diagnostics.trace.config import TraceConfig
from diagnostics.trace.records import Trace
from diagnostics.trace.supernodes import LabelFn
from diagnostics.transcoders.shipped import resolve_transcoders_dir


@dataclass
class Tracer:
    """Traces failures through one transcoder set."""

    transcoders: Path
    config: TraceConfig = field(default_factory=TraceConfig)
    labels: LabelFn | None = None  # atlas labels of transcoder features, when there are any
    _replacement: object = None
    last_graph: object = None  # the PrunedGraph of the last trace (for the graph JSON export)

    def trace(self, lm: LanguageModel, case) -> Trace:
        """The trace of `case` (a run.FailureCase)."""
        from diagnostics.trace.replacement import load_replacement
        from diagnostics.trace.run import trace_failure

        if self._replacement is None:
            self._replacement = load_replacement(lm, self.transcoders, device=self.config.device)
        trace, self.last_graph = trace_failure(
            lm, self._replacement, case, self.config, labels=self.labels
        )
        return trace

    def export_last(self, lm: LanguageModel, path: str | Path) -> Path:
        """Write the last trace's graph as circuit-tracer's graph JSON."""
        from diagnostics.trace.graph_json import export_graph_json

        if self.last_graph is None:
            raise ValueError("no graph has been traced yet")
        return export_graph_json(self.last_graph, lm.tokenizer, path)


def make_tracer(name: str, device: str) -> Tracer:
    """A Tracer for the set `name` ('default' or a directory) on `device`, its supernodes named
    by the set's atlas when it has one; nothing is read until the first trace (a missing set
    fails that trace, with its path in the message)."""
    from diagnostics.atlas.transcoder_atlas import NodeLabels

    directory = resolve_transcoders_dir(name)
    return Tracer(directory, TraceConfig(device=device), labels=NodeLabels(directory))
