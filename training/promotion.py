"""The promotion gate: when the challenger becomes the champion, and rolling back by hand.

The gate (``PromotionSettings``): a challenger is promoted only when it beats the champion on
the same rows by more than noise could explain — the challenger's test rows that neither model
was fitted on, the champion re-scoring them, and a paired accounts bootstrap of the difference
in PR AUC whose one-sided lower bound (95% by default) must be above zero. The first model must
beat the MQL rule on its own test rows in the same way, in recall in the top 10% (the rule's
PR AUC is sunk by its ties at 0 points, which would make that bar nearly free). Models that
answer another question (label, horizon, population) or build their features another way are
not compared. ``force`` overrides; the decision and its figures are recorded as tags on the
model version either way. A version whose training run did not finish is never promoted.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from training.bootstrap import bootstrap
from training.metrics import evaluate_scores
from training.model import LABEL, InMarketModel
from training.registry import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    load_model,
    raise_if_unreachable,
    reaching,
    version_by_alias,
    version_uri,
)
from training.settings import PromotionSettings, TrainSettings
from training.tracking import EVALUATED_SCORE, read_test_set

MQL_COLUMN = "mql_points_max_90d"
# what a score means: two models that differ in any of these answer different questions
COMPARABLE = ("label", "horizon_days", "include_customers")
# below this many positive test snapshots the paired bootstrap passes noise more often than
# its level (measured, docs/labels-and-evaluation.md "The promotion gate"): the verdict says so
FEW_POSITIVES = 140
# the gate's error budget is spent over attempts against one champion: attempt k is tested at
# a one-sided level of (1 - confidence) * 6 / (pi^2 k^2), which sums to (1 - confidence), so
# retraining until noise passes stays under the configured level in total
GATE_CHAMPION, GATE_ATTEMPT = "gate_champion", "gate_attempt"
ROLLED_BACK = "rolled_back_at"  # tag on a champion replaced by `promote --version`


@dataclass
class Promotion:
    """The gate's decision on a challenger, with its reason in words."""

    promoted: bool
    version: str
    previous: str | None
    reason: str


@dataclass
class Verdict:
    """A paired comparison on the same rows: both values, the gain's lower bound, the rows and
    their positives."""

    new: float
    old: float
    lower: float
    upper: float
    rows: int
    metric: str
    confidence: float
    positives: int = FEW_POSITIVES

    @property
    def wins(self) -> bool:
        return self.lower > 0

    def words(self, other: str) -> str:
        label = {
            "pr_auc": "PR AUC",
            "roc_auc": "ROC AUC",
            "recall_at_10": "recall in the top 10%",
        }.get(self.metric, self.metric)
        if self.wins:
            outcome = "beats it by more than noise"
        elif self.upper < 0:
            outcome = "is worse by more than noise"
        else:
            outcome = "is not better by more than noise"
        return (
            f"test {label} {self.new:.6f} vs {other}'s {self.old:.6f} on the same "
            f"{self.rows:,} test rows: gain {self.new - self.old:+.6f}, its "
            f"{self.confidence:.0%} lower bound {self.lower:+.6f} (paired accounts bootstrap), "
            f"so the challenger {outcome}"
            + (
                f"; with only {self.positives} positive test snapshots the bootstrap lets noise "
                "pass more often than its level says (measured for PR AUC: 8-10% at 50-90 "
                "positives for a 95% gate; fewer positives or other metrics not measured), so "
                "read a narrow win with care"
                if self.positives < FEW_POSITIVES and self.wins
                else ""
            )
        )


def paired_gain(
    test: pd.DataFrame,
    new: np.ndarray,
    old: np.ndarray,
    settings: PromotionSettings,
    metric: str | None = None,
) -> Verdict:
    """How much ``new`` beats ``old`` in ``metric`` (default ``settings.metric``) on ``test``'s
    rows, and the one-sided bounds of that gain over ``settings.rounds`` replicates of the
    accounts drawn with replacement."""
    metric = metric or settings.metric
    scores = {"new": np.asarray(new, dtype=float), "old": np.asarray(old, dtype=float)}
    labels, as_of = test[LABEL].to_numpy(), test["as_of"].to_numpy()
    point = {
        m: evaluate_scores(s, np.clip(s, 0, 1), labels, as_of)[metric] for m, s in scores.items()
    }
    replicates = bootstrap(
        scores,
        {m: np.clip(s, 0, 1) for m, s in scores.items()},  # (no Brier score is asked)
        labels,
        as_of,
        test["account_id"].to_numpy(),
        rounds=settings.rounds,
        seed=settings.seed,
        metrics=(metric,),
    )
    gains = replicates.difference("new", "old", metric)
    lower, upper = (
        float(q) for q in np.nanquantile(gains, [1 - settings.confidence, settings.confidence])
    )
    return Verdict(
        point["new"],
        point["old"],
        lower,
        upper,
        len(test),
        metric,
        settings.confidence,
        int(np.asarray(labels).sum()),
    )


def unseen_by(model: InMarketModel, test: pd.DataFrame) -> pd.DataFrame:
    """The test rows ``model`` was not fitted on and whose labels it could not have seen:
    snapshots after the last it was fitted on by more than its label horizon."""
    until = model.info.get("fitted_until")
    if until is None:  # a model from before this was recorded
        return test
    cut = pd.Timestamp(until) + pd.Timedelta(days=int(model.info["horizon_days"]))
    return test[test["as_of"] > cut]


def test_accounts(client: MlflowClient, name: str, version: str) -> set[str]:
    """The accounts of a version's test rows (the artifact its training logged)."""
    run_id = str(client.get_model_version(name, version).run_id)
    return set(read_test_set(run_id, ["account_id"])["account_id"].astype(str))


def shared_accounts(accounts: set[str], champions: set[str]) -> float:
    """The share of ``accounts`` (a challenger's test accounts) the champion's test rows hold:
    near 1 for a retrain on a newer export of the same CRM, near 0 for another dataset."""
    return len(accounts & champions) / len(accounts) if accounts else 0.0


def other_dataset_warning(
    client: MlflowClient, name: str, test: pd.DataFrame, settings: PromotionSettings
) -> list[str]:
    """A warning when the champion of ``name`` was trained on another dataset than ``test``'s
    rows: ``promote`` will not compare them."""
    champion = version_by_alias(client, name, CHAMPION)
    if champion is None:
        return []
    shared = shared_accounts(
        set(test["account_id"].astype(str)), test_accounts(client, name, champion.version)
    )
    if shared >= settings.min_shared_accounts:
        return []
    return [
        f"the champion of '{name}' (v{champion.version}) was trained on another dataset: "
        f"only {shared:.0%} of this run's test accounts are among its own, so `promote` "
        "will not compare them; give each dataset its own project ([tracking] project = "
        '"..." in the config)'
    ]


def attempt_level(attempt: int, confidence: float) -> float:
    """The one-sided confidence the ``attempt``-th comparison against one champion needs."""
    return 1 - (1 - confidence) * 6 / (np.pi**2 * attempt**2)


def _attempt(client: MlflowClient, name: str, challenger: ModelVersion, champion: str) -> int:
    """Which comparison by bootstrap against ``champion`` (or the MQL rule: "none") this is:
    one more than the other versions already compared with it; a version asked again keeps
    its number (its seeded bootstrap gives the same answer)."""
    if challenger.tags.get(GATE_CHAMPION) == champion:
        return int(challenger.tags[GATE_ATTEMPT])
    versions = client.search_model_versions(f"name = '{name}'")
    return 1 + sum(v.tags.get(GATE_CHAMPION) == champion for v in versions)


def _attempt_words(attempt: int, confidence: float) -> str:
    if attempt == 1:
        return f" (first attempt against it: tested at {attempt_level(1, confidence):.1%})"
    return (
        f" (attempt {attempt} against it: tested at {attempt_level(attempt, confidence):.2%}, "
        f"so that retraining until noise passes stays under {1 - confidence:.0%} in total)"
    )


@contextmanager
def _promotion_lock(client: MlflowClient) -> Iterator[None]:
    """One promotion at a time on a store: the champion is read, compared and moved under an
    exclusive lock on a file beside the SQLite store, so two promotions at once cannot both
    win (the second sees the first's champion). Other tracking URIs re-check the alias just
    before moving it (``promote``)."""
    uri = str(client.tracking_uri)
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(uri.removeprefix("sqlite:///")).with_name(".promotion.lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _require_finished(client: MlflowClient, name: str, version: ModelVersion) -> None:
    """A version whose training run did not finish is never promoted, even forced."""
    try:
        status = client.get_run(version.run_id).info.status if version.run_id else "GONE"
    except MlflowException as exc:  # the run was deleted (or garbage-collected) since
        raise_if_unreachable(exc, client.tracking_uri)
        status = "GONE"
    if status != RunStatus.to_string(RunStatus.FINISHED):
        raise RegistryError(
            f"model '{name}' version {version.version} is not promoted: its training run "
            f"{version.run_id} is {status}, not FINISHED (killed, failed or still running); "
            "promote a training that ran to its end"
        )


def promote(
    client: MlflowClient,
    name: str,
    *,
    force: bool = False,
    settings: PromotionSettings | None = None,
) -> Promotion:
    """Move ``champion`` to the challenger if it beats the champion by more than noise on the
    same rows (or forced); one promotion at a time (``_promotion_lock``)."""
    with _promotion_lock(client), reaching(client.tracking_uri):
        return _promote(client, name, force=force, settings=settings or PromotionSettings())


@dataclass
class _Decision:
    """The gate's answer before it is recorded: whether the challenger goes in, why, and
    whether a bootstrap comparison was made (and spent the error budget)."""

    promoted: bool
    reason: str
    tested: bool = False


@dataclass
class _Challenge:
    """A challenger's test rows and its own scores on them, the attempt against the champion
    (or the rule) and the level it is tested at, and whether it is forced."""

    test: pd.DataFrame
    own: np.ndarray
    attempt: int
    level: PromotionSettings
    settings: PromotionSettings
    force: bool

    def forced(self, reason: str) -> _Decision:
        """A comparison the gate cannot make: refused, unless forced."""
        return _Decision(self.force, reason + (" (forced)" if self.force else ""))

    def tested(self, verdict: Verdict, other: str, prefix: str = "") -> _Decision:
        """A comparison made: in when the challenger wins by more than noise, or forced."""
        return _Decision(
            verdict.wins or self.force,
            prefix
            + verdict.words(other)
            + _attempt_words(self.attempt, self.settings.confidence)
            + (" (forced)" if self.force and not verdict.wins else ""),
            tested=True,
        )


def _promote(
    client: MlflowClient, name: str, *, force: bool, settings: PromotionSettings
) -> Promotion:
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"model '{name}' has no '{CHALLENGER}' version; run `inmarket train`")
    _require_finished(client, name, challenger)
    champion = version_by_alias(client, name, CHAMPION)
    previous = champion.version if champion is not None else None
    if previous == challenger.version:
        return Promotion(
            False,
            challenger.version,
            previous,
            f"version {challenger.version} is already the champion",
        )
    rolled_back = challenger.tags.get(ROLLED_BACK)
    if rolled_back and not force:
        return Promotion(
            False,
            challenger.version,
            previous,
            f"version {challenger.version} was rolled back at {rolled_back}; train a new "
            "challenger, or use --force to put it back",
        )
    test = read_test_set(str(challenger.run_id))  # there: the run finished
    new_model = load_model(version_uri(name, challenger.version))
    own = (
        test[EVALUATED_SCORE].to_numpy()
        if EVALUATED_SCORE in test
        else new_model.predict(test, raw_score=True)
    )
    against = str(previous) if previous is not None else "none"
    attempt = _attempt(client, name, challenger, against)
    level = settings.model_copy(update={"confidence": attempt_level(attempt, settings.confidence)})
    challenge = _Challenge(test, own, attempt, level, settings, force)
    if champion is None:
        # the first model has no champion to beat: it must beat the MQL rule on its own test
        # rows by more than noise, else it is no better than what teams do today
        rule = test[MQL_COLUMN].fillna(0).to_numpy()
        verdict = paired_gain(test, own, rule, level, settings.rule_metric)
        decision = challenge.tested(verdict, "the MQL rule", prefix="no champion yet; ")
    else:
        decision = _against_champion(client, name, champion, new_model, challenge)
    now = version_by_alias(client, name, CHAMPION)  # compare-and-set, where no lock holds
    if (now.version if now else None) != previous:
        raise RegistryError(
            f"model '{name}': the champion changed to v{now.version if now else None} "
            f"while v{challenger.version} was being compared; run `inmarket promote` again"
        )
    _record(client, name, challenger.version, decision, against, attempt)
    return Promotion(decision.promoted, challenger.version, previous, decision.reason)


def _against_champion(
    client: MlflowClient,
    name: str,
    champion: ModelVersion,
    new_model: InMarketModel,
    challenge: _Challenge,
) -> _Decision:
    """The challenger against the champion on the test rows neither was fitted on, when the
    two answer the same question on the same dataset with features built alike."""
    test, settings = challenge.test, challenge.settings
    old_model = load_model(version_uri(name, champion.version))
    # (a model from before a key was recorded was trained with the setting's default)
    defaults = TrainSettings().model_dump()
    new, old = ({k: m.info.get(k, defaults[k]) for k in COMPARABLE} for m in (new_model, old_model))
    differ = {k: (new[k], old[k]) for k in COMPARABLE if new[k] != old[k]}
    unseen = unseen_by(old_model, test.assign(_own=challenge.own))
    shared = shared_accounts(
        set(test["account_id"].astype(str)), test_accounts(client, name, champion.version)
    )
    if differ:
        return challenge.forced(
            f"champion v{champion.version} answers another question ("
            + ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in differ.items())
            + "): its scores do not compare; use --force to switch"
        )
    if shared < settings.min_shared_accounts:
        # another dataset: its accounts, ids and history are not the champion's
        return challenge.forced(
            f"champion v{champion.version} was trained on another dataset: only "
            f"{shared:.0%} of the challenger's test accounts are among the champion's (at "
            f"least {settings.min_shared_accounts:.0%} needed); give each dataset its own "
            "project ([tracking] project in the config), or use --force"
        )
    if new_model.spec != old_model.spec:
        # the test rows hold the challenger's features: the champion would be scored on
        # features built another way, a comparison that means nothing
        return challenge.forced(
            f"champion v{champion.version} builds its features differently "
            f"({old_model.spec.model_dump()} vs {new_model.spec.model_dump()}): no "
            "comparison on one test set; compare them with `inmarket evaluate` and use "
            "--force"
        )
    if unseen.empty or unseen[LABEL].nunique() < 2:
        return challenge.forced(
            f"champion v{champion.version} was fitted on snapshots up to "
            f"{old_model.info.get('fitted_until')}: too few of the challenger's "
            f"{len(test):,} test rows are unseen by both for a fair comparison; use --force"
        )
    verdict = paired_gain(
        unseen,
        unseen["_own"].to_numpy(),
        old_model.predict(unseen, raw_score=True),
        challenge.level,
    )
    return challenge.tested(verdict, f"champion v{champion.version}")


def _record(
    client: MlflowClient,
    name: str,
    version: str,
    decision: _Decision,
    against: str,
    attempt: int,
) -> None:
    """The decision as tags on the challenger (and the attempt, when it was tested); the
    champion alias moved when it went in."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(
        name, version, "promotion", "accepted" if decision.promoted else "refused"
    )
    client.set_model_version_tag(name, version, "promotion_reason", decision.reason)
    client.set_model_version_tag(name, version, "promotion_at", stamp)
    if decision.tested:
        client.set_model_version_tag(name, version, GATE_CHAMPION, against)
        client.set_model_version_tag(name, version, GATE_ATTEMPT, str(attempt))
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)


def roll_back(client: MlflowClient, name: str, version: str, *, force: bool = False) -> Promotion:
    """Make ``version`` the champion again: one that has been champion before (accepted by
    the gate, or rolled back to), else only forced; its run must have finished. The champion
    it replaces is tagged ``rolled_back_at``, so the next plain ``promote`` does not quietly
    put it back."""
    with _promotion_lock(client), reaching(client.tracking_uri):
        try:
            target = client.get_model_version(name, version)
        except MlflowException as exc:
            raise_if_unreachable(exc, client.tracking_uri)
            raise RegistryError(f"model '{name}' has no version {version}") from exc
        _require_finished(client, name, target)
        if target.tags.get("promotion") not in ("accepted", "rollback") and not force:
            raise RegistryError(
                f"model '{name}' version {version} has never been champion (promotion: "
                f"{target.tags.get('promotion', 'never tried')}); roll back to a version that "
                "was, or use --force"
            )
        champion = version_by_alias(client, name, CHAMPION)
        if champion is not None and champion.version == target.version:
            return Promotion(False, target.version, champion.version, "already the champion")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        if champion is not None:
            client.set_model_version_tag(name, champion.version, ROLLED_BACK, stamp)
        reason = (
            f"rolled back from v{champion.version} by hand"
            if champion is not None
            else "made champion by hand (there was none)"
        )
        client.set_model_version_tag(name, target.version, "promotion", "rollback")
        if ROLLED_BACK in target.tags:  # back in service: a plain promote may keep it
            client.delete_model_version_tag(name, target.version, ROLLED_BACK)
        client.set_model_version_tag(name, target.version, "promotion_reason", reason)
        client.set_model_version_tag(name, target.version, "promotion_at", stamp)
        client.set_registered_model_alias(name, CHAMPION, target.version)
        return Promotion(True, target.version, champion.version if champion else None, reason)
