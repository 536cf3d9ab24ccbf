"""``pilothouse orgs | teams | keys | usage`` against a store in a temporary state dir."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pilothouse.cli import cli
from pilothouse.errors import BadRequest
from pilothouse.governance.cli_options import parse_when
from pilothouse.governance.records import LedgerEntry
from pilothouse.governance.store import SqlStore

T0 = 1_800_000_000.0


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def run(state: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--state-dir", str(state)])


def ok(state: Path, *args: str) -> Result:
    result = run(state, *args)
    assert result.exit_code == 0, result.output
    return result


def _team(state: Path) -> None:
    ok(state, "orgs", "create", "acme", "--budget-cost", "100")
    ok(state, "teams", "create", "acme", "ml", "--rpm", "60", "--max-priority", "5")


def test_governance_cli_creates_orgs_and_teams(state: Path) -> None:
    _team(state)
    assert (state / "governance.db").is_file()
    orgs = json.loads(ok(state, "orgs", "list", "--json").stdout)
    assert [(o["name"], o["quota"]["budget_cost"]) for o in orgs] == [("acme", 100.0)]
    teams = json.loads(ok(state, "teams", "list", "--json").stdout)
    assert [(t["org"], t["name"], t["max_priority"]) for t in teams] == [("acme", "ml", 5)]
    table = ok(state, "teams", "list").stdout
    assert "acme/ml" in table
    assert "rpm 60" in table


def test_governance_cli_set_quota_changes_only_what_is_given(state: Path) -> None:
    _team(state)
    ok(state, "teams", "set-quota", "acme/ml", "--tpm", "1000", "--budget-tokens", "5e6")
    (team,) = json.loads(ok(state, "teams", "list", "--json").stdout)
    assert team["quota"]["limit"] == {
        "requests_per_min": 60,
        "tokens_per_min": 1000,
        "concurrent": None,
    }
    assert team["quota"]["budget_tokens"] == 5e6
    ok(state, "teams", "set-quota", "ml", "--rpm", "none")
    (team,) = json.loads(ok(state, "teams", "list", "--json").stdout)
    assert team["quota"]["limit"]["requests_per_min"] is None
    assert run(state, "teams", "set-quota", "ml").exit_code == 2  # nothing to change


def test_governance_cli_shows_a_new_key_once(state: Path) -> None:
    _team(state)
    created = ok(
        state,
        "keys", "create", "--team", "acme/ml", "--name", "ci", "--models", "chat,embed",
        "--models", "code", "--max-priority", "3", "--expires", "2027-06-30",
        "--cidr", "10.0.0.0/8", "--tpm", "5000",
    )  # fmt: skip
    plaintext = created.stdout.strip()
    assert plaintext.startswith("ph-")
    assert "will not be shown again" in created.stderr
    assert "acme/ml" in created.stderr
    listed = ok(state, "keys", "list").stdout + ok(state, "keys", "list", "--json").stdout
    assert plaintext not in listed
    (key,) = json.loads(ok(state, "keys", "list", "--json").stdout)
    assert "digest" not in key
    assert key["shown"] == plaintext[:8]
    assert key["team"] == "acme/ml"
    assert key["scope"]["models"] == ["chat", "code", "embed"]
    assert key["scope"]["networks"] == ["10.0.0.0/8"]
    assert key["scope"]["expires_at"] == datetime(2027, 6, 30, tzinfo=UTC).timestamp()
    assert key["quota"]["limit"]["tokens_per_min"] == 5000


def test_governance_cli_creates_agent_keys_with_an_owner(state: Path) -> None:
    _team(state)
    refused = run(state, "keys", "create", "--team", "ml", "--name", "bot", "--agent")
    assert refused.exit_code == 2
    assert "owner" in refused.stderr
    ok(state, "keys", "create", "--team", "ml", "--name", "bot", "--agent", "--owner", "alice")
    (key,) = json.loads(ok(state, "keys", "list", "--json").stdout)
    assert (key["kind"], key["owner"]) == ("agent", "alice")


def test_governance_cli_revokes_keys(state: Path) -> None:
    _team(state)
    ok(state, "keys", "create", "--team", "ml", "--name", "ci")
    assert "revoked key ci" in ok(state, "keys", "revoke", "ml/ci").stdout
    assert json.loads(ok(state, "keys", "list", "--json").stdout) == []
    (key,) = json.loads(ok(state, "keys", "list", "--all", "--json").stdout)
    assert key["revoked_at"] is not None


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("teams", "create", "nope", "ml"), 1, "no organisation 'nope'"),
        (("orgs", "create", "acme"), 1, "already exists"),
        (("keys", "revoke", "nope"), 1, "no live key 'nope'"),
        (("keys", "create", "--team", "ml", "--name", "x", "--expires", "soon"), 2, "soon"),
        (("keys", "create", "--team", "ml", "--name", "x", "--cidr", "10.0.0.1/8"), 2, "CIDR"),
        (("teams", "set-quota", "ml", "--rpm", "-1"), 2, "negative"),
        (("teams", "set-quota", "ml", "--rpm", "many"), 2, "not a number"),
        (("usage", "--by", "day"), 2, "group by"),
    ],
)
def test_governance_cli_errors_are_one_clean_line(
    state: Path, args: tuple[str, ...], status: int, message: str
) -> None:
    _team(state)
    result = run(state, *args)
    assert result.exit_code == status, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_governance_cli_ambiguous_team_names_are_bad_input(state: Path) -> None:
    _team(state)
    ok(state, "orgs", "create", "globex")
    ok(state, "teams", "create", "globex", "ml")
    result = run(state, "keys", "create", "--team", "ml", "--name", "ci")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: team 'ml' is ambiguous: name it as org/team"
    ]


def test_governance_cli_reports_usage(state: Path) -> None:
    _team(state)
    ok(state, "keys", "create", "--team", "ml", "--name", "ci")
    store = SqlStore(f"sqlite:///{state / 'governance.db'}")
    (team,) = store.list_teams()
    (key,) = store.list_keys()
    now = datetime.now(UTC).timestamp()
    store.write_ledger(
        [
            LedgerEntry("a", now - 60, "chat", 100, 20, 0.5, key_id=key.id, team_id=team.id),
            LedgerEntry("b", now - 30, "chat", 50, 10, 0.25, key_id=key.id, team_id=team.id),
            LedgerEntry("c", now - 86_400 * 3, "embed", 7, 0, 1.0, team_id=team.id),
        ]
    )
    store.close()
    rows = json.loads(ok(state, "usage", "--json").stdout)
    assert rows == [
        {"team": team.id, "model": "chat", "team_name": "acme/ml", "requests": 2,
         "prompt_tokens": 150, "completion_tokens": 30, "cost": 0.75},
        {"team": team.id, "model": "embed", "team_name": "acme/ml", "requests": 1,
         "prompt_tokens": 7, "completion_tokens": 0, "cost": 1.0},
    ]  # fmt: skip
    recent = json.loads(ok(state, "usage", "--by", "key", "--since", "1d", "--json").stdout)
    assert [(r["key_name"], r["requests"]) for r in recent] == [("ci", 2)]
    (total,) = json.loads(ok(state, "usage", "--by", "", "--json").stdout)
    assert total["requests"] == 3
    table = ok(state, "usage", "--by", "team,model").stdout
    assert "acme/ml" in table
    assert "0.7500" in table


def test_governance_cli_reads_the_store_from_a_fleet_file(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "models:\n  - name: a\n    engine: sim\n    replicas: 1\n"
        f"gateway:\n  governance:\n    state_dir: {tmp_path / 'from-fleet'}\n"
    )
    result = CliRunner().invoke(cli, ["orgs", "create", "acme", "-f", str(fleet)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-fleet" / "governance.db").is_file()
    url = f"sqlite:///{tmp_path / 'url.db'}"
    result = CliRunner().invoke(cli, ["orgs", "create", "x", "-f", str(fleet), "--store", url])
    assert result.exit_code == 0, result.output  # --store wins over the fleet file
    assert (tmp_path / "url.db").is_file()


def test_governance_cli_default_state_dir_is_xdg(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    result = CliRunner(env=env).invoke(cli, ["orgs", "create", "acme"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "xdg" / "pilothouse" / "governance.db").is_file()


def test_governance_cli_bad_fleet_file_and_unreachable_store(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("gateway:\n  governance:\n    stroe: x\n")
    result = CliRunner().invoke(cli, ["orgs", "list", "-f", str(fleet)])
    assert result.exit_code == 2
    assert "gateway.governance.stroe" in result.stderr
    down = "postgresql://postgres@127.0.0.1:1/none"
    result = CliRunner().invoke(cli, ["orgs", "list", "--store", down])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: governance store postgresql+psycopg://postgres@127.0.0.1:1")


def test_parse_when_reads_durations_and_iso_dates() -> None:
    assert parse_when("30d", T0, ahead=True) == T0 + 30 * 86_400
    assert parse_when("12h", T0, ahead=False) == T0 - 12 * 3600
    assert parse_when("90m", T0, ahead=True) == T0 + 5400
    assert parse_when("2027-01-01", T0, ahead=True) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert parse_when("2027-01-01T02:00:00+02:00", T0, ahead=True) == (
        datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    )
    with pytest.raises(BadRequest):
        parse_when("tomorrow", T0, ahead=True)
