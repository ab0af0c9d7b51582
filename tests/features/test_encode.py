"""Label and domain normalisation (``features.encode``)."""

from __future__ import annotations

import pandas as pd

from features.encode import domain_of, normalise_label


def test_label_and_domain_normalisation() -> None:
    assert normalise_label(pd.Series(["Closed Won ", "C-Level", "", None])).tolist()[:2] == [
        "closed_won",
        "c_level",
    ]
    assert domain_of(
        pd.Series(["Ana@Sub.Acme.com", "https://www.acme.com/pricing?x=1", "acme.com:443"])
    ).tolist() == ["sub.acme.com", "acme.com", "acme.com"]
