"""The MLflow store (SQLite under ``mlruns/``), the registry's aliases, and promotion.

``challenger`` is the newest registered model; ``champion`` is the one served. A challenger is
promoted only when its test PR AUC is not worse than the champion's on the same rows (the
challenger's test set, re-scored with both models), or with ``force``; the decision and its
figures are recorded as tags on the model version either way. A version whose training run did
not finish is never promoted.

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
import pandas as pd
from mlflow.entities import RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.errors import InMarketError
from features.leftovers import owner_alive, scratch_dir, this_host
from training.model import LABEL, InMarketModel
from training.settings import TrackingSettings, TrainSettings

CHALLENGER, CHAMPION = "challenger", "champion"
TEST_SET = "evaluation/test_set.parquet"
PID_TAG, HOST_TAG = "pid", "hostname"  # of the process that runs a training run


class RegistryError(InMarketError, LookupError):
    """A model, version or alias that the registry does not hold."""


def tracking_uri(store: Path) -> str:
    """The SQLite tracking URI of a store folder."""
    return f"sqlite:///{Path(store).resolve()}/mlflow.db"


def connect(settings: TrackingSettings) -> MlflowClient:
    """Point MLflow at the store (creating it) and make sure the experiment exists."""
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


def promote(client: MlflowClient, name: str, *, force: bool = False) -> Promotion:
    """Move ``champion`` to the challenger if it is not worse on the same rows (or forced);
    one promotion at a time (``_promotion_lock``)."""
    with _promotion_lock(client):
        return _promote(client, name, force=force)


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


def _promote(client: MlflowClient, name: str, *, force: bool) -> Promotion:
    from sklearn.metrics import average_precision_score

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
    if champion is None:
        # the first model has no champion to beat: it must beat the MQL rule on its own test
        # rows (training scored both on them), else it is worse than what teams do today
        info = load_model(f"models:/{name}/{challenger.version}").info
        new, rule = info["test_metrics"]["pr_auc"], info["mql_test_metrics"]["pr_auc"]
        decided = new > rule or force
        reason = (
            f"no champion yet; test PR AUC {new:.6f} "
            f"{'beats' if new > rule else 'does not beat'} the MQL rule's {rule:.6f} on the "
            "same test rows" + (" (forced)" if force and new <= rule else "")
        )
    else:
        with scratch_dir("promote") as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=challenger.run_id, artifact_path=TEST_SET, dst_path=str(tmp)
            )
            test = pd.read_parquet(local)
        models = [load_model(f"models:/{name}/{v.version}") for v in (challenger, champion)]
        # (a model from before a key was recorded was trained with the setting's default)
        defaults = TrainSettings().model_dump()
        asked = [{k: m.info.get(k, defaults[k]) for k in COMPARABLE} for m in models]
        differ = {k: (asked[0][k], asked[1][k]) for k in COMPARABLE if asked[0][k] != asked[1][k]}
        if differ:
            decided = force
            reason = (
                f"champion v{champion.version} answers another question ("
                + ", ".join(f"{k} {new!r} vs {old!r}" for k, (new, old) in differ.items())
                + "): its scores do not compare; use --force to switch"
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
        else:
            new, old = (average_precision_score(test[LABEL], m.predict(test)) for m in models)
            decided = new >= old or force
            verdict = "not worse than" if new >= old else "worse than"
            reason = (
                f"test PR AUC {new:.6f} is {verdict} champion v{champion.version}'s {old:.6f} "
                f"on the same {len(test):,} test rows"
                + (" (forced)" if force and new < old else "")
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
    if decided:
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
    return Promotion(decided, challenger.version, champion.version if champion else None, reason)
