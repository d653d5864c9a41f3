"""Tests run in float64 so the kernel can be held to 1e-6 relative against the Python oracle."""

import jax

jax.config.update("jax_enable_x64", True)
