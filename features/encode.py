"""Values to canonical form: labels normalised, ids and vocabularies encoded, domains extracted.

Each works once per distinct value (labels, domains and ids repeat), or as an Arrow hash lookup.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def normalise_label(values: pd.Series) -> pd.Series:
    """'Closed Won ' -> 'closed_won': lower case, runs of other characters become '_'.

    Labels repeat, so the work is done once per distinct value."""
    codes, uniques = pd.factorize(values)
    text = pd.Series(uniques, dtype="str").str.strip().str.lower()
    text = text.str.replace(r"[^0-9a-z]+", "_", regex=True).str.strip("_")
    return spread_labels(text.where(text.str.len() > 0), codes, values.index)


def _large_text(
    values: pd.Series | pd.Index | np.ndarray | list[str] | tuple[str, ...],
) -> pa.Array | pa.ChunkedArray:
    array = (
        pa.array(values, from_pandas=True)
        if not isinstance(values, pa.Array | pa.ChunkedArray)
        else values
    )
    return array if array.type == pa.large_string() else array.cast(pa.large_string())


def take_codes(values: np.ndarray, codes: np.ndarray, missing: object = None) -> np.ndarray:
    """``values[codes]``, with ``missing`` where a code is -1 (also when ``values`` is empty)."""
    out = np.full(len(codes), missing, dtype=values.dtype if missing is not None else object)
    found = codes >= 0
    out[found] = values[codes[found]]
    return out


def encode(
    values: pd.Series | np.ndarray, vocabulary: pd.Series | pd.Index | tuple[str, ...]
) -> np.ndarray:
    """Position of each value in ``vocabulary``; -1 where missing or unknown (hash lookup)."""
    vocab = _large_text(vocabulary)
    if isinstance(vocab, pa.ChunkedArray):
        vocab = vocab.combine_chunks()
    found = pc.index_in(_large_text(values), value_set=vocab)
    codes: np.ndarray = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
    return codes.astype(np.int64)


def domain_of(values: pd.Series) -> pd.Series:
    """An email address, URL or bare domain -> 'example.com' (once per distinct value)."""
    codes, uniques = pd.factorize(values)
    text = pd.Series(uniques, dtype="str").str.strip().str.lower()
    text = text.str.replace(r"^.*@", "", regex=True)
    text = text.str.replace(r"^[a-z][a-z0-9+.-]*://", "", regex=True)
    text = text.str.replace(r"^www\.", "", regex=True)
    text = text.str.replace(r"[/:?#].*$", "", regex=True)
    return spread_labels(text.where(text.str.len() > 0), codes, values.index)


def spread_labels(labels: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Spread per-distinct-value results back to the rows (code -1 = missing)."""
    if labels.empty:  # every value missing
        return pd.Series(pd.NA, index=index, dtype="str")
    taken = labels.take(np.maximum(codes, 0)).where(codes >= 0).set_axis(index)
    return taken.astype("str")


def as_id(values: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == np.floor(whole)).all():
            values = values.astype("Int64")
    text = values.astype("str").str.strip()
    return text.where(text.str.len() > 0)
