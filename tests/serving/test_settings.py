"""Where the service's model comes from, as the environment says: the tracking URI (ours wins
over MLflow's own variable) and INMARKET_MODEL, checked before any server is asked."""

from __future__ import annotations

import pytest

from features.errors import ConfigError
from serving.settings import ServiceSettings
from training.registry import resolved_uri


def test_mlflow_tracking_uri_counts_and_ours_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    server, ours = "http://mlflow.internal:5000", "http://other:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    assert resolved_uri(ServiceSettings.from_env({}).tracking) == server
    settings = ServiceSettings.from_env({"INMARKET_TRACKING_URI": ours})
    assert resolved_uri(settings.tracking) == ours
    # and what `inmarket serve` hands its server names ours
    assert settings.environment()["INMARKET_TRACKING_URI"] == ours


@pytest.mark.parametrize("uri", ["models:/inmarket@champion", "models:/inmarket-acme/12"])
def test_a_registered_model_is_accepted(uri: str) -> None:
    assert ServiceSettings.from_env({"INMARKET_MODEL": uri}).model == uri


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("models:/inmarket/latest", "models:/<name>@<alias>"),
        ("runs:/0123/model", "models:/<name>@<alias>"),
        ("models:/inmarket/Production/x", "registry stages are deprecated"),
    ],
)
def test_another_model_uri_is_refused_naming_the_variable(uri: str, said: str) -> None:
    with pytest.raises(ConfigError, match="INMARKET_MODEL") as raised:
        ServiceSettings.from_env({"INMARKET_MODEL": uri})
    assert said in str(raised.value)
