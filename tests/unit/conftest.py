"""Fixtures of seeded synthetic datasets (the builders live in ``synthetic_data.py``)."""

from __future__ import annotations

from collections.abc import Callable

import anndata as ad
import pytest
from synthetic_data import (
    LABEL_MAP,
    SIGNATURE_GENES,
    TARGET_GENES,
    make_contract,
    make_raw,
)


@pytest.fixture
def raw_factory() -> Callable[..., ad.AnnData]:
    """Factory of raw synthetic datasets (see :func:`make_raw`)."""
    return make_raw


@pytest.fixture
def contract_factory() -> Callable[..., ad.AnnData]:
    """Factory of harmonised synthetic datasets: ``contract_factory(**make_raw_kwargs)``."""

    def factory(*, dataset: str = "synthetic", **kwargs) -> ad.AnnData:
        return make_contract(make_raw(**kwargs), dataset=dataset)

    return factory


@pytest.fixture
def raw_adata() -> ad.AnnData:
    """The default raw synthetic dataset (seed 0)."""
    return make_raw(seed=0)


@pytest.fixture
def contract_adata(raw_adata: ad.AnnData) -> ad.AnnData:
    """The default synthetic dataset in harmonised form, counts not yet normalised."""
    return make_contract(raw_adata)


@pytest.fixture
def label_map() -> dict[str, str]:
    """Label map of the synthetic data."""
    return dict(LABEL_MAP)


@pytest.fixture
def signature_genes() -> list[str]:
    return list(SIGNATURE_GENES)


@pytest.fixture
def target_genes() -> list[str]:
    return list(TARGET_GENES)
