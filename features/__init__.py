"""Tables in, point-in-time account features out: the input sources, the data contract and its
validation, the feature catalogue, ``build_features`` (the one pure function the CLI, Spark and
the HTTP service share) and the engines that run it over a whole export."""

from features.lazy import public_names

__all__, __getattr__ = public_names(
    __name__,
    {
        "sources": ("TableSource", "TablePart", "FolderSource", "SqlSource", "open_source"),
        "validation": ("validate", "load_dataset", "Dataset"),
        "families": ("build_features",),
        "catalogue": ("catalogue", "Feature", "FAMILIES"),
        "engine": ("build_feature_table", "read_feature_table", "FeatureBuild"),
        "activity": ("weekly_activity",),
        "settings": ("DataSettings", "FeatureSettings", "FeatureSpec"),
        "errors": ("InMarketError", "ContractError", "ConfigError"),
        "io": ("write_atomic", "sidecar"),
    },
)
