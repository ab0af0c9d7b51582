"""A believable synthetic B2B market, written as the five contract tables plus a hidden truth.

The world is built so that it does not hand a model its answer:

- accounts have firmographics and a latent *fit* that raises both how often they enter a
  buying cycle and how often they win;
- an in-market *episode* is a buying cycle: third-party intent surges a few weeks before the
  first site visit (when the provider covers the account and sees the research), then more
  people, then more senior people engage, with momentum towards the day an opportunity is
  created; a share of the research is anonymous;
- most intent surges are spurious and look like genuine ones (same scores, same lengths);
- a quarter of episodes stay *dark* (little first-party activity, intent only); some won deals
  come from quiet accounts (partner or outbound sourced); some episodes end without a deal;
- *tire-kickers* (one junior person downloading and filling forms) earn MQL points and never buy;
  customers are busy and buy renewals and expansions, not new business;
- wins depend on fit and on how much of the buying group was engaged; seasonality and
  background noise everywhere.

Accounts are generated in fixed chunks, each with its own random stream derived from the seed,
and streamed to Parquet, so memory is bounded and the same seed gives the same bytes. The hidden
truth goes to ``_truth/``, which the loader never reads. Every assumption, its value and its
source: docs/world.md.
"""

from inmarket.synthetic.spec import WorldSpec
from inmarket.synthetic.vocabularies import SENIORITIES
from inmarket.synthetic.world import (
    CHUNK_ACCOUNTS,
    DIRT_FILE,
    TRUTH_DIR,
    WorldSummary,
    generate_world,
)

__all__ = [
    "CHUNK_ACCOUNTS",
    "DIRT_FILE",
    "SENIORITIES",
    "TRUTH_DIR",
    "WorldSpec",
    "WorldSummary",
    "generate_world",
]
