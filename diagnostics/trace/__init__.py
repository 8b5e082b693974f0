"""Attribution graphs of a failure: circuit-tracer's graph at the divergence through the per-layer
transcoders (error nodes kept), pruned, grouped into supernodes, attributed to the prompt's and
the output's characters, and verified by interventions on the real model against a
selection-matched null. `records` is light (pydantic only); the rest imports torch and
circuit-tracer, so import its modules directly (e.g. `diagnostics.trace.run`)."""
