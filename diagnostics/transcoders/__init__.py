"""Per-layer transcoders (PLTs): one sparse dictionary per MLP, reading the MLP's input and
predicting its output, saved in circuit-tracer's `transcoder_set` format so its attribution graphs
run on them."""
