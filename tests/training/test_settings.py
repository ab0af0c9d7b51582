"""The training package's settings: a project names its own model and experiment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from training.settings import TrackingSettings


def test_a_project_names_its_own_model_and_experiment() -> None:
    # given settings with a project, with a project and a model name, and with neither
    hub = TrackingSettings.model_validate({"project": "hubspot"})
    named = TrackingSettings.model_validate({"project": "hubspot", "model_name": "crm"})
    # then the project's model and experiment are its own unless named, and the default stays
    assert (hub.model_name, hub.experiment) == ("inmarket-hubspot", "inmarket-hubspot")
    assert (named.model_name, named.experiment) == ("crm", "inmarket-hubspot")
    assert TrackingSettings().model_name == "inmarket"
    with pytest.raises(ValidationError, match="project"):
        TrackingSettings.model_validate({"project": "../other store"})
