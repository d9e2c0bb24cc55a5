"""The team server of docs/team-server.md, for real: `mlflow server --app-name basic-auth` with
logins and a host check. Anonymous writes are refused, a sweep with credentials lands, and
every refusal reaches the user of `forecast` as one line that says what to do."""

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.server import get_app_client

from forecast.cli import main
from tests.test_experiment import TINY
from tests.test_remote_tracking import FORECAST, free_port, mlflow_server_process
from tests.test_sweep import set_args

pytestmark = pytest.mark.processes

ADMIN = ("admin", "admin-password-" + secrets.token_hex(4))  # basic-auth wants 12 characters
ALICE = ("alice", "alice-password-1")
BOB = ("bob", "bob-password-12")
SWEEP = ["run", "sine_long_gap", *set_args([*TINY, "task.gaps=[2]"])]  # a parent, two trials


@pytest.fixture(scope="module")
def team_server(tmp_path_factory, empty_store):
    """The recipe's server on 127.0.0.1: basic-auth with its users in a temporary database,
    the host check allowing only ``127.0.0.1:PORT`` (so ``localhost:PORT`` plays a DNS name
    left out of --allowed-hosts), and users alice and bob made by the admin."""
    folder = tmp_path_factory.mktemp("team_server")
    shutil.copyfile(empty_store, folder / "server.db")
    config = folder / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
    }
    port = free_port()
    options = ["--app-name", "basic-auth", "--allowed-hosts", f"127.0.0.1:{port}"]
    with mlflow_server_process(folder, port, *options, env=env):
        server = TeamServer(f"http://127.0.0.1:{port}", port, folder)
        with server.as_admin():  # as docs/team-server.md has the admin do it
            admin = get_app_client("basic-auth", tracking_uri=server.url)
            for username, password in (ALICE, BOB):
                admin.create_user(username=username, password=password)
        yield server


@dataclass(frozen=True)
class TeamServer:
    url: str
    port: int
    folder: Path  # its stores

    @contextlib.contextmanager
    def as_admin(self) -> Iterator[None]:
        """MLflow's clients, called within, log in as the admin (they read the login from the
        environment at each request)."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
            patch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
            yield

    def contents(self) -> tuple[set[str], int]:
        """The names of its experiments and its number of runs."""
        with self.as_admin():
            client = MlflowClient(self.url)
            experiments = client.search_experiments()
            runs = client.search_runs([e.experiment_id for e in experiments], max_results=10_000)
        return {e.name for e in experiments}, len(runs)


@pytest.fixture
def as_user(monkeypatch, tmp_path, tmp_path_factory):
    """Sets MLFLOW_TRACKING_URI and the login (or none) for `forecast` in this process; a
    login kept in ~/.mlflow/credentials on this machine stays out of the tests."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))

    def login(uri: str, user: tuple[str, str] | None) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        for name, value in zip(
            ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
            user or (None, None),
            strict=True,
        ):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    monkeypatch.chdir(tmp_path)
    return login


def post(url: str, path: str, body: dict, host: str | None = None) -> int:
    """The HTTP status of an anonymous POST of ``body`` as JSON to ``path``."""
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Host": host} if host else {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_anonymous_writes_are_refused(team_server):
    create = "/api/2.0/mlflow/experiments/create"
    assert post(team_server.url, create, {"name": "anonymous"}) == 401
    # A host name the server was not told of is refused before any login is asked for.
    assert post(team_server.url, create, {"name": "x"}, host="mlflow.example.com") == 403
    delete = "/api/2.0/mlflow/experiments/delete"
    assert post(team_server.url, delete, {"experiment_id": "0"}) == 401


def test_a_sweep_with_credentials_lands(team_server, as_user, capsys):
    as_user(team_server.url, ALICE)
    assert main(SWEEP) == 0
    assert main(["runs"]) == 0 and main(["compare", "sine_long_gap"]) == 0
    assert "sine_long_gap" in capsys.readouterr().out

    client = MlflowClient(team_server.url)
    experiment = client.get_experiment_by_name("sine_long_gap")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3 and {run.info.status for run in runs} == {"FINISHED"}
    assert {run.info.user_id for run in runs} == {"alice"}  # the login, not the OS user
    assert any((team_server.folder / "artifacts").rglob("summary.csv"))


def needs_login(url: str) -> str:
    return (
        f"forecast: error: MLflow tracking server {url} needs a login (401 Unauthorized): "
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it\n"
    )


def wrong_login(url: str) -> str:
    return (
        f"forecast: error: MLflow tracking server {url} refused the login of user 'alice' "
        "(401 Unauthorized): check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD\n"
    )


def wrong_host(url: str) -> str:
    return (
        f"forecast: error: MLflow tracking server {url} refused this host name (403 Invalid "
        f"Host header); start it with --allowed-hosts {url.removeprefix('http://')}\n"
    )


@pytest.mark.parametrize("command", [SWEEP, ["runs"], ["compare"]], ids=["run", "runs", "compare"])
@pytest.mark.parametrize(
    "host, user, message",
    [
        ("127.0.0.1", None, needs_login),
        ("127.0.0.1", (ALICE[0], "not-her-password"), wrong_login),
        ("localhost", ALICE, wrong_host),  # a name left out of --allowed-hosts
    ],
    ids=["no-login", "wrong-password", "host-not-allowed"],
)
def test_a_refusal_is_one_line_and_writes_nothing(
    team_server, as_user, capsys, tmp_path, command, host, user, message
):
    url = f"http://{host}:{team_server.port}"
    as_user(url, user)
    before = team_server.contents()
    assert main(command) == 2
    captured = capsys.readouterr()
    assert captured.err == message(url)
    assert team_server.contents() == before
    assert not any(tmp_path.iterdir())


def test_forecast_run_without_a_login_prints_one_line_and_no_traceback(team_server, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    result = subprocess.run(
        [FORECAST, *SWEEP],
        cwd=tmp_path,
        env={**env, "MLFLOW_TRACKING_URI": team_server.url, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # (TensorFlow may print its start-up lines before it.)
    assert result.stderr.splitlines()[-1] + "\n" == needs_login(team_server.url)
    assert sum(line.startswith("forecast:") for line in result.stderr.splitlines()) == 1


def test_another_users_experiment_needs_edit_permission(team_server, as_user, capsys):
    # basic-auth's default_permission = READ: alice's experiment is read-only to bob.
    as_user(team_server.url, ALICE)
    client = MlflowClient(team_server.url)
    if client.get_experiment_by_name("sine_long_gap") is None:
        client.create_experiment("sine_long_gap")
    experiment_id = client.get_experiment_by_name("sine_long_gap").experiment_id
    as_user(team_server.url, BOB)
    before = team_server.contents()
    assert main(SWEEP) == 2
    assert capsys.readouterr().err == (
        f"forecast: error: MLflow tracking server {team_server.url} denied user 'bob' this "
        "request (403 Permission denied): the experiment's owner or the server's admin can "
        "grant EDIT on it\n"
    )
    assert team_server.contents() == before

    # As docs/team-server.md has the admin grant it.
    with team_server.as_admin():
        admin = get_app_client("basic-auth", tracking_uri=team_server.url)
        admin.grant_user_permission("bob", "experiment", experiment_id, "EDIT")
    MlflowClient(team_server.url).set_experiment_tag(experiment_id, "edited_by", "bob")
