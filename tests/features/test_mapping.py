"""Bring your own data: a CRM-shaped export loads through its mapping file into the contract."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.errors import ContractError
from features.mapping import Mapping
from features.settings import DataSettings
from features.validation import load_dataset
from inmarket.config import ConfigError
from inmarket.crm_example import mapping_file


def test_the_export_has_a_crm_shape(crm_dir: Path) -> None:
    files = {p.name for p in crm_dir.glob("*.csv")}
    assert files == {
        "companies.csv",
        "contacts.csv",
        "leads.csv",
        "touches.csv",
        "web_sessions.csv",
        "intent_weekly.csv",
        "deals.csv",
    }
    leads = pd.read_csv(crm_dir / "leads.csv")
    assert "Company ID" not in leads.columns  # leads are resolved by email domain
    assert pd.read_csv(crm_dir / "deals.csv")["Stage"].isin(["Closed Won", "Closed Lost"]).any()


def test_export_loads_into_the_same_contract(world_dir: Path, crm_dir: Path) -> None:
    direct = load_dataset(world_dir, DataSettings())
    mapped = load_dataset(crm_dir, DataSettings(mapping=mapping_file()))
    assert mapped.report.total_rejected == 0
    assert mapped.report.reconciles
    for table in ("accounts", "people", "events", "intent", "opportunities"):
        assert len(mapped.table(table)) == len(direct.table(table)), table

    def by(frame: pd.DataFrame, key: str) -> pd.DataFrame:
        return frame.set_index(key).sort_index()

    acc_d, acc_m = by(direct.accounts, "account_id"), by(mapped.accounts, "account_id")
    pd.testing.assert_series_equal(acc_m["domain"], acc_d["domain"])
    pd.testing.assert_series_equal(acc_m["industry"], acc_d["industry"])
    assert (acc_m["employee_count"] == acc_d["employee_count"]).all()

    ppl_d, ppl_m = by(direct.people, "person_id"), by(mapped.people, "person_id")
    pd.testing.assert_series_equal(ppl_m["account_id"], ppl_d["account_id"])
    pd.testing.assert_series_equal(ppl_m["buying_role"], ppl_d["buying_role"])
    pd.testing.assert_series_equal(ppl_m["seniority"], ppl_d["seniority"])

    ev_d, ev_m = by(direct.events, "event_id"), by(mapped.events, "event_id")
    for column in ("account_id", "person_id", "event_type", "channel", "topic"):
        pd.testing.assert_series_equal(ev_m[column], ev_d[column], check_dtype=False)
    pd.testing.assert_series_equal(ev_m["timestamp"], ev_d["timestamp"].dt.floor("s"))

    op_d, op_m = (
        by(direct.opportunities, "opportunity_id"),
        by(mapped.opportunities, "opportunity_id"),
    )
    for column in ("account_id", "status", "type"):
        pd.testing.assert_series_equal(op_m[column], op_d[column])
    pd.testing.assert_series_equal(op_m["created_at"], op_d["created_at"].dt.floor("D"))

    keys = ["account_id", "date", "topic"]
    int_d = direct.intent.sort_values(keys).reset_index(drop=True)
    int_m = mapped.intent.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(int_m[[*keys, "score"]], int_d[[*keys, "score"]])


def test_yaml_mapping_is_equivalent(crm_dir: Path, tmp_path: Path) -> None:
    data = tomllib.loads(mapping_file().read_text())
    yaml_path = tmp_path / "mapping.yaml"
    yaml_path.write_text(yaml.safe_dump(data))
    assert Mapping.load(yaml_path) == Mapping.load(mapping_file())


def _write_mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[leads]]\nfile = "x.csv"\n', r"unknown table\(s\) \['leads'\]"),
        (
            '[[events]]\nfile = "x.csv"\ncolumns = { stage = "S" }\n',
            r"\[events\] x.csv: \['stage'\] are not columns",
        ),
    ],
    ids=["unknown-table", "column-the-table-does-not-have"],
)
def test_a_wrong_mapping_is_a_config_error_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write_mapping(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        Mapping.load(path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"Touch Type"',
            '"Touch Kind"',
            r"events \(touches.csv\): mapped column\(s\) "
            r"\['Touch Kind'\] not in the file; found \[",
        ),
        (
            '"%d.%m.%Y", closed_at',
            '"%Y-%m-%d", closed_at',
            r"opportunities.created_at: .* could not be read as "
            r"timestamps.*check formats.created_at",
        ),
    ],
    ids=["mapped-column-missing-from-file", "wrong-date-format-names-the-setting"],
)
def test_a_mapping_the_export_does_not_fit_is_a_contract_error(
    crm_dir: Path, tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = mapping_file().read_text()
    assert old in text  # the example mapping has what is changed
    with pytest.raises(ContractError, match=message):
        load_dataset(
            crm_dir, DataSettings(mapping=_write_mapping(tmp_path, text.replace(old, new)))
        )


def test_unmatched_domains_are_rejected_not_dropped(crm_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "export"
    data.mkdir()
    for path in crm_dir.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    sessions = pd.read_csv(data / "web_sessions.csv", dtype=str)
    sessions.loc[:4, "Company Domain"] = "nobody-we-know.org"
    sessions.to_csv(data / "web_sessions.csv", index=False)
    ds = load_dataset(data, DataSettings(mapping=mapping_file()))
    assert ds.report.tables["events"].rejects == {"domain_matches_no_account": 5}
    assert ds.report.reconciles
