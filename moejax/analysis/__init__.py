"""Differentiable analyses on top of the cost model: break-even κ*, Epoch dense-equivalents,
sensitivities, calibration of accounting constants."""
