"""Figure modules the ``python -m moejax.plot`` command draws, one concept per module (layer
between the analysis and the commands: they read datasets and draw, they compute nothing new)."""
