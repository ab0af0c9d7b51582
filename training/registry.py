"""The MLflow store (SQLite under ``mlruns/``), the registry's aliases, and promotion.

``challenger`` is the newest registered model; ``champion`` is the one served. The gate
(``PromotionSettings``): a challenger is promoted only when it beats the champion on the same
rows by more than noise could explain — the challenger's test rows that neither model was
fitted on, the champion re-scoring them, and a paired accounts bootstrap of the difference in
PR AUC whose one-sided lower bound (95% by default) must be above zero. The first model must
beat the MQL rule on its own test rows in the same way, in recall in the top 10% (the rule's
PR AUC is sunk by its ties at 0 points, which would make that bar nearly free). Models that
answer another question (label, horizon, population) or build their features another way are
not compared. ``force`` overrides; the decision and its figures are recorded as tags on the
model version either way. A version whose training run did not finish is never promoted.

A run is tagged with the pid and host of the process that trains it: a run left RUNNING by a
process that was killed (``kill -9`` skips MLflow's own clean-up) is marked FAILED by
``fail_abandoned_runs``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.errors import InMarketError
from features.leftovers import owner_alive, scratch_dir, this_host
from training.bootstrap import bootstrap
from training.metrics import evaluate_scores
from training.model import LABEL, InMarketModel
from training.settings import PromotionSettings, TrackingSettings, TrainSettings

CHALLENGER, CHAMPION = "challenger", "champion"
TEST_SET = "evaluation/test_set.parquet"
# beside the test rows: the challenger's own ranking score on each, as its evaluation scored
# it: its margin, or in short-history mode an out-of-fold calibrated probability (the
# registered model has seen every row, fitted on groups 1-4 of the accounts and stopped early
# and calibrated on group 0)
EVALUATED_SCORE = "score_as_evaluated"
MQL_COLUMN = "mql_points_max_90d"
PID_TAG, HOST_TAG = "pid", "hostname"  # of the process that runs a training run


class RegistryError(InMarketError, LookupError):
    """A model, version or alias that the registry does not hold."""


def tracking_uri(store: Path) -> str:
    """The SQLite tracking URI of a store folder."""
    return f"sqlite:///{Path(store).resolve()}/mlflow.db"


def connect(settings: TrackingSettings) -> MlflowClient:
    """Point MLflow at the store (creating it) and make sure the experiment exists.

    MLflow's artifact download bars are turned off unless the environment sets
    ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``: they printed on every train, promote and score."""
    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
    store = Path(settings.store)
    store.mkdir(parents=True, exist_ok=True)
    uri = settings.uri or tracking_uri(store)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    if client.get_experiment_by_name(settings.experiment) is None:
        client.create_experiment(
            settings.experiment, artifact_location=(store.resolve() / "artifacts").as_uri()
        )
    mlflow.set_experiment(settings.experiment)
    return client


def owner_tags() -> dict[str, str]:
    """The tags that name this process as a run's owner."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: this_host()}


def fail_abandoned_runs(client: MlflowClient, experiment: str) -> list[str]:
    """Mark FAILED the runs of ``experiment`` left RUNNING by a process of this host that has
    died; their ids. Runs without an owner, or owned by another host, are left as they are."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    running = client.search_runs(
        [found.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    abandoned = [
        run.info.run_id
        for run in running
        if run.data.tags.get(PID_TAG, "").isdigit()
        and not owner_alive(int(run.data.tags[PID_TAG]), run.data.tags.get(HOST_TAG, ""))
    ]
    for run_id in abandoned:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
    return abandoned


def resolve_version(client: MlflowClient, uri: str) -> tuple[str, str]:
    """(name, version) of ``models:/<name>/<version>`` or ``models:/<name>@<alias>``: scores
    record the version that made them, never an alias that may move."""
    if not uri.startswith("models:/"):
        raise RegistryError(f"{uri}: give a registered model as models:/<name>/<version|@alias>")
    name, at, alias = uri.removeprefix("models:/").partition("@")
    if at:
        found = version_by_alias(client, name, alias)
        if found is None:
            raise RegistryError(
                f"model '{name}' has no '{alias}' version; run `inmarket train` and "
                "`inmarket promote`"
            )
        return name, str(found.version)
    name, _, version = name.partition("/")
    return name, version


def load_model(uri: str) -> InMarketModel:
    """An ``InMarketModel`` from a models:/ or runs:/ URI."""
    wrapper = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    model: InMarketModel = wrapper.model
    return model


def version_by_alias(client: MlflowClient, name: str, alias: str):  # type: ignore[no-untyped-def]
    """The model version behind an alias, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass
class Promotion:
    """The gate's decision on a challenger, with its reason in words."""

    promoted: bool
    version: str
    previous: str | None
    reason: str


# what a score means: two models that differ in any of these answer different questions
COMPARABLE = ("label", "horizon_days", "include_customers")


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


def promote(
    client: MlflowClient,
    name: str,
    *,
    force: bool = False,
    settings: PromotionSettings | None = None,
) -> Promotion:
    """Move ``champion`` to the challenger if it beats the champion by more than noise on the
    same rows (or forced); one promotion at a time (``_promotion_lock``)."""
    with _promotion_lock(client):
        return _promote(client, name, force=force, settings=settings or PromotionSettings())


# below this many positive test snapshots the paired bootstrap passes noise more often than
# its level (measured, docs/labels-and-evaluation.md "The promotion gate"): the verdict says so
FEW_POSITIVES = 140


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
    cut = pd.Timestamp(until) + pd.Timedelta(days=int(model.info.get("horizon_days", 90)))
    return test[test["as_of"] > cut]


def test_accounts(client: MlflowClient, name: str, version: str) -> set[str]:
    """The accounts of a version's test rows (the artifact its training logged)."""
    run_id = client.get_model_version(name, version).run_id
    with scratch_dir("promote") as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=TEST_SET, dst_path=str(tmp)
        )
        return set(pd.read_parquet(local, columns=["account_id"])["account_id"].astype(str))


def shared_accounts(accounts: set[str], champions: set[str]) -> float:
    """The share of ``accounts`` (a challenger's test accounts) the champion's test rows hold:
    near 1 for a retrain on a newer export of the same CRM, near 0 for another dataset."""
    return len(accounts & champions) / len(accounts) if accounts else 0.0


# the gate's error budget is spent over attempts against one champion: attempt k is tested at
# a one-sided level of (1 - confidence) * 6 / (pi^2 k^2), which sums to (1 - confidence), so
# retraining until noise passes stays under the configured level in total
GATE_CHAMPION, GATE_ATTEMPT = "gate_champion", "gate_attempt"


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


ROLLED_BACK = "rolled_back_at"  # tag on a champion replaced by `promote --version`


def roll_back(client: MlflowClient, name: str, version: str, *, force: bool = False) -> Promotion:
    """Make ``version`` the champion again: one that has been champion before (accepted by
    the gate, or rolled back to), else only forced; its run must have finished. The champion
    it replaces is tagged ``rolled_back_at``, so the next plain ``promote`` does not quietly
    put it back."""
    with _promotion_lock(client):
        try:
            target = client.get_model_version(name, version)
        except MlflowException as exc:
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


def _require_finished(client: MlflowClient, name: str, version: ModelVersion) -> None:
    """A version whose training run did not finish is never promoted, even forced."""
    try:
        status = client.get_run(version.run_id).info.status if version.run_id else "GONE"
    except MlflowException:  # the run was deleted (or garbage-collected) since
        status = "GONE"
    if status != RunStatus.to_string(RunStatus.FINISHED):
        raise RegistryError(
            f"model '{name}' version {version.version} is not promoted: its training run "
            f"{version.run_id} is {status}, not FINISHED (killed, failed or still running); "
            "promote a training that ran to its end"
        )


def _promote(
    client: MlflowClient, name: str, *, force: bool, settings: PromotionSettings
) -> Promotion:
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"model '{name}' has no '{CHALLENGER}' version; run `inmarket train`")
    _require_finished(client, name, challenger)
    champion = version_by_alias(client, name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return Promotion(
            False,
            challenger.version,
            champion.version,
            f"version {challenger.version} is already the champion",
        )
    rolled_back = challenger.tags.get(ROLLED_BACK)
    if rolled_back and not force:
        return Promotion(
            False,
            challenger.version,
            champion.version if champion else None,
            f"version {challenger.version} was rolled back at {rolled_back}; train a new "
            "challenger, or use --force to put it back",
        )
    with scratch_dir("promote") as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=challenger.run_id, artifact_path=TEST_SET, dst_path=str(tmp)
        )
        test = pd.read_parquet(local)
    new_model = load_model(f"models:/{name}/{challenger.version}")
    own = (
        test[EVALUATED_SCORE].to_numpy()
        if EVALUATED_SCORE in test
        else new_model.predict(test, raw_score=True)
    )
    against = str(champion.version) if champion is not None else "none"
    attempt = _attempt(client, name, challenger, against)
    level = settings.model_copy(update={"confidence": attempt_level(attempt, settings.confidence)})
    tested = False  # whether a bootstrap comparison was made (and spends the budget)
    if champion is None:
        # the first model has no champion to beat: it must beat the MQL rule on its own test
        # rows by more than noise, else it is no better than what teams do today
        verdict = paired_gain(
            test, own, test[MQL_COLUMN].fillna(0).to_numpy(), level, settings.rule_metric
        )
        tested = True
        decided = verdict.wins or force
        reason = (
            "no champion yet; "
            + verdict.words("the MQL rule")
            + _attempt_words(attempt, settings.confidence)
            + (" (forced)" if force and not verdict.wins else "")
        )
    else:
        old_model = load_model(f"models:/{name}/{champion.version}")
        models = [new_model, old_model]
        # (a model from before a key was recorded was trained with the setting's default)
        defaults = TrainSettings().model_dump()
        asked = [{k: m.info.get(k, defaults[k]) for k in COMPARABLE} for m in models]
        differ = {k: (asked[0][k], asked[1][k]) for k in COMPARABLE if asked[0][k] != asked[1][k]}
        unseen = unseen_by(old_model, test.assign(_own=own))
        shared = shared_accounts(
            set(test["account_id"].astype(str)), test_accounts(client, name, champion.version)
        )
        if differ:
            decided = force
            reason = (
                f"champion v{champion.version} answers another question ("
                + ", ".join(f"{k} {new!r} vs {old!r}" for k, (new, old) in differ.items())
                + "): its scores do not compare; use --force to switch"
                + (" (forced)" if force else "")
            )
        elif shared < settings.min_shared_accounts:
            # another dataset: its accounts, ids and history are not the champion's
            decided = force
            reason = (
                f"champion v{champion.version} was trained on another dataset: only "
                f"{shared:.0%} of the challenger's test accounts are among the champion's (at "
                f"least {settings.min_shared_accounts:.0%} needed); give each dataset its own "
                "project ([tracking] project in the config), or use --force"
                + (" (forced)" if force else "")
            )
        elif models[0].spec != models[1].spec:
            # the test rows hold the challenger's features: the champion would be scored on
            # features built another way, a comparison that means nothing
            decided = force
            reason = (
                f"champion v{champion.version} builds its features differently "
                f"({models[1].spec.model_dump()} vs {models[0].spec.model_dump()}): no "
                "comparison on one test set; compare them with `inmarket evaluate` and use "
                "--force" + (" (forced)" if force else "")
            )
        elif unseen.empty or unseen[LABEL].nunique() < 2:
            decided = force
            reason = (
                f"champion v{champion.version} was fitted on snapshots up to "
                f"{old_model.info.get('fitted_until')}: too few of the challenger's "
                f"{len(test):,} test rows are unseen by both for a fair comparison; use --force"
                + (" (forced)" if force else "")
            )
        else:
            verdict = paired_gain(
                unseen,
                unseen["_own"].to_numpy(),
                old_model.predict(unseen, raw_score=True),
                level,
            )
            tested = True
            decided = verdict.wins or force
            reason = (
                verdict.words(f"champion v{champion.version}")
                + _attempt_words(attempt, settings.confidence)
                + (" (forced)" if force and not verdict.wins else "")
            )
    now = version_by_alias(client, name, CHAMPION)  # compare-and-set, where no lock holds
    if (now.version if now else None) != (champion.version if champion else None):
        raise RegistryError(
            f"model '{name}': the champion changed to v{now.version if now else None} "
            f"while v{challenger.version} was being compared; run `inmarket promote` again"
        )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(
        name, challenger.version, "promotion", "accepted" if decided else "refused"
    )
    client.set_model_version_tag(name, challenger.version, "promotion_reason", reason)
    client.set_model_version_tag(name, challenger.version, "promotion_at", stamp)
    if tested:
        client.set_model_version_tag(name, challenger.version, GATE_CHAMPION, against)
        client.set_model_version_tag(name, challenger.version, GATE_ATTEMPT, str(attempt))
    if decided:
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
    return Promotion(decided, challenger.version, champion.version if champion else None, reason)


def _attempt_words(attempt: int, confidence: float) -> str:
    if attempt == 1:
        return f" (first attempt against it: tested at {attempt_level(1, confidence):.1%})"
    return (
        f" (attempt {attempt} against it: tested at {attempt_level(attempt, confidence):.2%}, "
        f"so that retraining until noise passes stays under {1 - confidence:.0%} in total)"
    )
