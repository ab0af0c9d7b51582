"""The fit family: what an account is. Its firmographics (the contract's categories, size and
age) and the account columns ``features.columns`` declares, at each snapshot, with the levels of
every categorical one fixed (``fit_categories``) so that every part of a table, and every
scoring, codes them alike."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import FIT_CATEGORIES
from features.encode import encode
from features.errors import ContractError
from features.settings import FeatureSpec
from features.windows import DAY_SECONDS, TimeIndex, seconds

# beyond a year, an age grows with the calendar, not with anything the account does
HISTORY_CAP_DAYS = 365


def _declared_values(
    spec: FeatureSpec,
    accounts: pd.DataFrame,
    history: pd.DataFrame,
    snap_code: np.ndarray,
    snap_s: np.ndarray,
) -> dict[str, pd.Series]:
    """Each declared account column's raw value at every snapshot: a static column's export
    value, a dated one's value valid at as_of (the latest account_history row before it)."""
    values: dict[str, pd.Series] = {}
    dated = [c for c, kind in spec.columns.items() if kind == "dated"]
    for column, kind in spec.columns.items():
        if kind == "static":
            if column not in accounts:
                found = [c for c in accounts.columns if not c.startswith("_")]
                raise ContractError(
                    f"features.columns declares accounts.{column} as static, but the accounts "
                    f"table has no column {column}; found {found}"
                )
            values[column] = accounts[column].reset_index(drop=True).take(snap_code)
    if dated:
        account_index = pd.Index(accounts["account_id"])
        for column in dated:
            rows = history[history["field"] == column]
            code = encode(rows["account_id"], account_index)
            latest = TimeIndex(code, seconds(rows["valid_from"])).latest(snap_code, snap_s)
            value = np.r_[rows["value"].to_numpy(dtype=object), None]  # the last: none yet
            values[column] = pd.Series(value[np.where(latest >= 0, latest, -1)], dtype="str")
    return values


def _is_numeric(values: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(values):
        return True
    present = values.dropna()
    return bool(len(present)) and pd.to_numeric(present, errors="coerce").notna().all()


def fit_categories(
    accounts: pd.DataFrame,
    spec: FeatureSpec = FeatureSpec(),
    history: pd.DataFrame | None = None,
) -> dict[str, tuple[str, ...]]:
    """The sorted levels of every categorical fit column (the contract's and the declared
    ones), so that every part of a table, and every scoring, codes them alike."""
    columns = {c: accounts[c] for c in FIT_CATEGORIES if c in accounts}
    for column, kind in spec.columns.items():
        if kind == "static" and column in accounts:
            columns[column] = accounts[column]
        elif kind == "dated" and history is not None:
            columns[column] = history.loc[history["field"] == column, "value"]
    return {
        name: tuple(sorted(values.dropna().astype("str").unique()))
        for name, values in columns.items()
        if name in FIT_CATEGORIES or not _is_numeric(values)
    }


def _fit(
    frame: pd.DataFrame,
    accounts: pd.DataFrame,
    snap_code: np.ndarray,
    snap_s: np.ndarray,
    categories: dict[str, tuple[str, ...]],
) -> None:
    """The contract's firmographics into ``frame``: categories with stable levels."""
    for column in FIT_CATEGORIES:
        values = (
            accounts[column]
            if column in accounts
            else pd.Series(pd.NA, index=accounts.index, dtype="str")
        )
        taken = values.astype("str").to_numpy()[snap_code]
        frame[column] = pd.Categorical(taken, categories=list(categories.get(column, ())))
    employees = (
        accounts["employee_count"]
        if "employee_count" in accounts
        else pd.Series(np.nan, index=accounts.index)
    )
    frame["employee_count"] = employees.to_numpy(dtype=float)[snap_code]
    if "created_at" in accounts:
        created = seconds(accounts["created_at"]).astype(float)
        created[accounts["created_at"].isna().to_numpy()] = np.nan
        # capped: beyond a year, age grows with the calendar, not with anything the account does
        age = (snap_s - created[snap_code]) / DAY_SECONDS
        frame["account_age_days"] = np.minimum(age, HISTORY_CAP_DAYS)
    else:
        frame["account_age_days"] = np.nan


def _declared(
    frame: pd.DataFrame, values: dict[str, pd.Series], categories: dict[str, tuple[str, ...]]
) -> None:
    """Declared account columns into ``frame``: categories with stable levels, else numbers."""
    for column, raw in values.items():
        if column in categories:
            text = raw.astype("str").to_numpy()
            frame[column] = pd.Categorical(text, categories=list(categories[column]))
        else:
            frame[column] = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)


def add_fit_columns(
    frame: pd.DataFrame,
    accounts: pd.DataFrame,
    history: pd.DataFrame,
    snap_code: np.ndarray,
    snap_s: np.ndarray,
    spec: FeatureSpec,
    categories: dict[str, tuple[str, ...]],
) -> None:
    """The fit columns of every snapshot into ``frame``: firmographics, then declared columns."""
    _fit(frame, accounts, snap_code, snap_s, categories)
    _declared(frame, _declared_values(spec, accounts, history, snap_code, snap_s), categories)
