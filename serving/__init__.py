"""Scores, reasons and buying groups; batch scoring and its files; the BentoML service, its
routes and the review page; the static report."""

from features.lazy import public_names

__all__, __getattr__ = public_names(
    __name__,
    {
        "service": ("InMarketService",),
        "settings": ("ServiceSettings",),
        "batch": ("score_batch", "rank_accounts", "BatchResult"),
        "scoring": ("score_rows", "explain_rows", "score_and_stage", "buying_group"),
        "report": ("write_report",),
    },
)
