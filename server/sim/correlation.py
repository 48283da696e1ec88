"""Correlated shocks: checking a correlation matrix, factoring it, applying the factor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .checks import ParameterError


def check_correlation(matrix: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Validate a correlation matrix; return a factor A with A @ A.T == matrix.

    It must be square over ``names``, finite, symmetric, with a unit diagonal
    and entries in [-1, 1], and positive semi-definite. A singular matrix (two
    instruments perfectly correlated) is accepted: the factor comes from an
    eigendecomposition, not a Cholesky one.
    """
    k = len(names)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (k, k):
        raise ParameterError(
            "correlation", f"correlation must be {k}x{k} (one row per symbol), got shape {matrix.shape}"
        )
    if not np.isfinite(matrix).all():
        raise ParameterError("correlation", "correlation entries must be finite numbers in [-1, 1]")
    if not np.allclose(matrix, matrix.T, rtol=0, atol=1e-12):
        i, j = np.unravel_index(np.argmax(np.abs(matrix - matrix.T)), matrix.shape)
        raise ParameterError(
            "correlation",
            f"correlation must be symmetric: [{names[i]}][{names[j]}] != [{names[j]}][{names[i]}]",
        )
    if not np.allclose(np.diag(matrix), 1.0, rtol=0, atol=1e-12):
        i = int(np.argmax(np.abs(np.diag(matrix) - 1.0)))
        raise ParameterError(
            "correlation", f"correlation diagonal must be 1: [{names[i]}][{names[i]}] = {matrix[i, i]}"
        )
    if np.abs(matrix).max() > 1.0:
        raise ParameterError("correlation", "correlation entries must be in [-1, 1]")
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    if eigenvalues.min() < -1e-10:
        raise ParameterError(
            "correlation",
            f"correlation must be positive semi-definite; its smallest eigenvalue is {eigenvalues.min():.3g}",
        )
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


# From this many rows on, a wide block is summed one output column at a time (_correlate_long).
_LONG_BLOCK_ROWS = 4096


def correlate(shocks: np.ndarray, factor_t: np.ndarray) -> np.ndarray:
    """``shocks @ factor_t``, every row summed in one fixed order (j ascending).

    A BLAS matrix product picks its kernel by shape, and kernels round
    differently: with OpenBLAS on an AVX2 machine a one-row block differed
    from the same row inside a larger block in the last bit, so a stream of
    chunk_size 1 was not the unary path. Separate multiplies and adds give
    every row the same bits whatever the number of rows. The loops below
    compute the same sums in the same order; each is the faster one for its
    shape (numpy's per-call cost against its short inner loops).
    """
    n, k = shocks.shape
    if k > 8 and n >= _LONG_BLOCK_ROWS:
        return _correlate_long(shocks, factor_t)
    out = np.empty_like(shocks)
    if k <= 8:  # one column at a time: long strided loops
        term = np.empty(n)
        for i in range(k):
            column = out[:, i]
            np.multiply(shocks[:, 0], factor_t[0, i], out=column)
            for j in range(1, k):
                np.multiply(shocks[:, j], factor_t[j, i], out=term)
                column += term
        return out
    np.multiply(shocks[:, :1], factor_t[0], out=out)  # one input column at a time, all outputs
    term = np.empty_like(out)
    for j in range(1, k):
        np.multiply(shocks[:, j : j + 1], factor_t[j], out=term)
        out += term
    return out


def _correlate_long(shocks: np.ndarray, factor_t: np.ndarray) -> np.ndarray:
    """``correlate`` for a block of many rows, through ``correlate_columns``."""
    return correlate_columns(np.ascontiguousarray(shocks.T), factor_t).T


def correlate_columns(columns: np.ndarray, factor_t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``correlate`` of a transposed block: row j of ``columns`` holds asset j's shocks,
    and row i of the result asset i's correlated ones, each summed in the same order
    (j ascending) over long contiguous rows, skipping the factor's entries that are
    exactly 0 (a market catching up on a day of ticks works this way).

    A skipped term is +0 or -0, and adding it to a partial sum changes nothing but,
    at most, the sign of a zero; so every sum has the value of the full one, and a
    zero's sign never reaches a price (``exp(-0.0) == exp(0.0)``). Factors of
    block-diagonal correlations (sectors, instruments correlated with nothing) hold
    many such zeros.
    """
    k, n = columns.shape
    out = np.empty_like(columns) if out is None else out
    term = np.empty(n)
    factor = factor_t.tolist()
    rows = list(columns)
    for i in range(k):
        terms = [j for j in range(k) if factor[j][i] != 0.0] or [0]
        total = out[i]
        np.multiply(rows[terms[0]], factor[terms[0]][i], out=total)
        for j in terms[1:]:
            np.multiply(rows[j], factor[j][i], out=term)
            total += term
    return out
