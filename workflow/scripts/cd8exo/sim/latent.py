"""Per-patient latent levels of the simulator: activation ``a_p``, independent ``e_p``, ``c_p``.

Each latent is one value per patient, standardised so that an effect size is the log-scale
effect of one standard deviation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["correlated_latent", "residualised_latent", "spread_latent"]


def spread_latent(n: int, *, rng: np.random.Generator) -> np.ndarray:
    """Evenly spaced values with jitter, in random patient order, standardised."""
    values = np.linspace(-1.0, 1.0, n)
    values = values + rng.normal(0.0, 0.25 * (values[1] - values[0]), size=n)
    values = values[rng.permutation(n)]
    return (values - values.mean()) / values.std()


def residualised_latent(reference: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """A standard normal latent made exactly uncorrelated (Pearson) with ``reference``."""
    raw = rng.normal(size=reference.size)
    design = np.column_stack([np.ones_like(reference), reference])
    coef, *_ = np.linalg.lstsq(design, raw, rcond=None)
    resid = raw - design @ coef
    return (resid - resid.mean()) / resid.std()


def correlated_latent(
    reference: np.ndarray, *, correlation: float, rng: np.random.Generator
) -> np.ndarray:
    """``rho * reference + sqrt(1 - rho^2) * z``, ``z`` i.i.d. standard normal.

    With a standardised ``reference`` the result has variance 1 and population correlation
    ``rho = correlation`` with it. ``z`` is drawn from a generator spawned from ``rng``, so
    ``rng``'s own stream, and every later draw from it, is the one it would be without this
    call.
    """
    # a spawned child: the main stream, and so everything else, is left as it was
    fresh = rng.spawn(1)[0].standard_normal(reference.size)
    return correlation * reference + np.sqrt(1.0 - correlation**2) * fresh
