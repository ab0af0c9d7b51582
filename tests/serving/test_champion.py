"""The served model's holder: a failed check keeps the model loaded before and says why, a
tracking server that does not answer is named as such, and nothing it meets crashes it."""

from __future__ import annotations

from typing import Any

import pytest

from serving import champion
from serving.champion import ChampionHolder, RegistrySource
from tests.serving.server import _free_port as free_port
from training.registry import TrackingUnreachable
from training.settings import TrackingSettings


class FakeSource:
    """A source whose answers the test sets: a version, or an error to raise."""

    name = "inmarket"
    fixed = False
    server: str | None = "http://127.0.0.1:5000"

    def __init__(self) -> None:
        self.answer: str | Exception = "1"

    def current(self) -> str:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def load(self, version: str) -> Any:
        return f"model {version}"

    def describe(self, version: str) -> dict[str, Any]:
        return {"kind": "tracking_server"}

    def won_deals(self, version: str) -> dict[str, float] | None:
        return None


@pytest.fixture
def holder(monkeypatch: pytest.MonkeyPatch) -> tuple[ChampionHolder, FakeSource]:
    # the served feature record is the schemas' business, tested with real models elsewhere
    monkeypatch.setattr(champion, "record_model", lambda model: model)
    monkeypatch.setattr(champion.SERVED_FEATURES, "use", lambda record: None)
    source = FakeSource()
    return ChampionHolder(source), source


def test_a_registry_source_names_its_tracking_server_and_says_when_it_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the champion of a tracking server that is not there, named by MLflow's variable
    server = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    source = RegistrySource(TrackingSettings(request_retries=0), "models:/inmarket@champion")
    # then it names the server; asked for the version, MLflow's client finds no one there
    assert source.server == server
    with pytest.raises(TrackingUnreachable):
        source.current()
    # and the champion of a store is no server's
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert RegistrySource(TrackingSettings(), "models:/inmarket@champion").server is None


def test_a_failed_check_keeps_the_model_and_readiness_says_why(
    holder: tuple[ChampionHolder, FakeSource],
) -> None:
    served, source = holder
    # given a tracking server that does not answer at start
    source.answer = TrackingUnreachable("tracking server is unreachable (connection refused)")
    # then nothing is loaded, nothing raised, and readiness names the server
    assert served.refresh() is False
    ready, said = served.readiness()
    assert not ready
    assert said == f"no model loaded: the tracking server {source.server} is unreachable"
    # when it answers: version 1 is served
    source.answer = "1"
    assert served.refresh() is True and served.version == "1"
    assert served.readiness() == (True, "serving inmarket version 1 (tracking_server)")
    # when it stops answering: version 1 is still served, and readiness says the server went
    source.answer = TrackingUnreachable("tracking server is unreachable (no connection)")
    assert served.refresh() is False and served.version == "1"
    ready, said = served.readiness()
    assert ready and f"; the tracking server {source.server} is unreachable" in said
    # when another error comes (a bug, a bad model): kept, said, never raised
    source.answer = ValueError("a model the catalogue cannot describe")
    assert served.refresh() is False and served.version == "1"
    assert served.readiness()[1].endswith("; a model the catalogue cannot describe")
    # and when the server is back with the same version, the error is gone
    source.answer = "1"
    assert served.refresh() is False
    assert served.readiness() == (True, "serving inmarket version 1 (tracking_server)")
