"""The synthetic worlds the session fixtures generate: their size and seed, and the feature spec
the session model is trained on."""

from __future__ import annotations

from features.settings import FeatureSpec
from inmarket.synthetic import CHUNK_ACCOUNTS

# two chunks, so chunked generation is exercised
WORLD_ACCOUNTS = CHUNK_ACCOUNTS + 500
WORLD_SEED = 11
# not the default: every path that scores the session model must take the model's spec, and a
# path that fell back to the defaults (7/30/90 days, intent a week late) would disagree
WORLD_SPEC = FeatureSpec(windows=(7, 30, 120), intent_delay_days=14)
