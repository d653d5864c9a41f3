"""The physics layer: specs, architecture arithmetic, collectives, the one-point cost kernel,
dense baselines, partition legality, and the pure-Python oracle. Imports jax and numpy only."""
