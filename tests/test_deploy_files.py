"""The deployment files (Dockerfile, deploy/): each is held to what it promises, with the real
daemon, the real API model and the real tools wherever they run here.

A file that only parses proves little, so: the Kubernetes config boots two real replicas on one
Postgres that answer the manifest's probes and the image's HEALTHCHECK; the systemd unit passes
``systemd-analyze verify``; the CI snippets are run against a local receiver and their bodies
validated by the API's own request model; the image is built when docker works.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import REPO
from tests.daemons import free_port, wait_for
from watchdog.api import DeployIn
from watchdog.settings import load_config

DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
TOKEN = "token-for-the-deploy-file-tests"


# --- the Dockerfile, read simply: one (instruction, arguments) per logical line, by stage ---


@dataclass
class Stage:
    base: str
    name: str | None
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.steps if i == instruction]

    def env(self) -> dict[str, str]:
        pairs = [shlex.split(a) for a in self.args("ENV")]
        return dict(p.split("=", 1) for words in pairs for p in words)


def dockerfile() -> list[Stage]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip() or None))
        elif stages:
            stages[-1].steps.append((instruction, rest))
    return stages


def runtime() -> Stage:
    return dockerfile()[-1]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of CMD, ENTRYPOINT or HEALTHCHECK … CMD (exec form, no shell)."""
    found = json.loads(arguments[arguments.index("[") :])
    assert isinstance(found, list)
    return [str(word) for word in found]


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context."""
    found = []
    for arguments in stage.args("COPY"):
        words = arguments.split()
        if not any(w.startswith("--from=") for w in words):
            paths = [w for w in words if not w.startswith("--")]
            found.append((paths[:-1], paths[-1]))
    return found


def image_rules_path() -> str:
    """Where the image keeps the default rules."""
    (destination,) = [d for s, d in copies(runtime()) if s == ["config/rules.yaml"]]
    return destination


def test_the_dockerfile_builds_in_a_builder_stage_and_runs_slim_and_unprivileged() -> None:
    stages = dockerfile()
    builder, final = stages[0], stages[-1]
    assert builder.name == "builder"
    assert len(stages) == 2
    assert any(a.startswith("--from=builder ") for a in final.args("COPY"))
    # both stages on the same Python, so the venv the builder made runs in the runtime
    assert builder.base == final.base == "${PYTHON}"
    assert re.search(r"ARG PYTHON=python:3\.11-slim", (REPO / "Dockerfile").read_text())
    assert final.args("USER") == ["10001:10001"]
    assert "git" in " ".join(final.args("RUN")).split()
    volumes = exec_form(final.args("VOLUME")[0])
    assert set(volumes) == {"/etc/watchdog", "/var/lib/watchdog"}
    assert final.args("WORKDIR") == ["/var/lib/watchdog"]  # relative paths land in the state
    port = final.env()["WATCHDOG_API__LISTEN"]
    assert port == "0.0.0.0:8080"
    assert final.args("EXPOSE") == ["8080"]
    assert exec_form(final.args("ENTRYPOINT")[0]) == ["watchdog"]
    healthcheck = final.args("HEALTHCHECK")[0]
    assert "/healthz" in healthcheck
    assert "CMD [" in healthcheck


def test_the_image_command_is_a_valid_watchdog_command_line() -> None:
    command = exec_form(runtime().args("CMD")[0])
    assert command[:1] == ["run"]
    answer = subprocess.run(
        [sys.executable, "-m", "watchdog.cli", *command, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    # the daemon and every other verb (docker run IMAGE config check) read the mounted config
    assert command[command.index("--config") + 1] == runtime().env()["WATCHDOG_CONFIG"]
    assert runtime().env()["WATCHDOG_CONFIG"] == "/etc/watchdog/watchdog.yaml"


def test_the_dockerignore_admits_exactly_what_the_image_copies() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # an allow-list: a stray .env never reaches the build context
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = {s.rstrip("/") for stage in dockerfile() for srcs, _ in copies(stage) for s in srcs}
    assert sources == admitted
    assert all((REPO / source).exists() for source in sources)


def docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not docker_works(), reason="no usable docker daemon here (`docker info`)")
def test_the_image_builds_and_runs_watchdog_as_uid_10001_with_git() -> None:
    tag = "rollback-watchdog:test-deploy-files"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(REPO)], capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stderr[-3000:]
    try:

        def run(*args: str) -> str:
            done = subprocess.run(
                ["docker", "run", "--rm", *args], capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert "usage: watchdog" in run(tag, "--help")
        assert run("--entrypoint", "id", tag, "-u").strip() == "10001"
        assert "git version" in run("--entrypoint", "git", tag, "--version")
        rules = image_rules_path()
        assert run("--entrypoint", "cat", tag, rules) == (REPO / "config/rules.yaml").read_text()
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


# --- Kubernetes ---


def kubernetes() -> dict[str, dict[str, Any]]:
    """Every manifest in deploy/kubernetes, by kind (one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        with path.open() as stream:
            for document in yaml.safe_load_all(stream):
                assert document["kind"] not in found, f"two {document['kind']}s"
                assert "namespace" not in document["metadata"], path
                found[document["kind"]] = document
    return found


def pod() -> dict[str, Any]:
    return dict(kubernetes()["Deployment"]["spec"]["template"]["spec"])


def container() -> dict[str, Any]:
    (only,) = pod()["containers"]
    return dict(only)


def configmap_config() -> str:
    return str(kubernetes()["ConfigMap"]["data"]["watchdog.yaml"])


def secret_env_example(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_kubernetes_runs_two_non_root_replicas_with_probes_a_budget_and_a_service() -> None:
    manifests = kubernetes()
    assert set(manifests) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    deployment = manifests["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert manifests["Service"]["spec"]["selector"] == labels
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert manifests["PodDisruptionBudget"]["spec"]["minAvailable"] == 1

    spec, main = pod(), container()
    assert spec["terminationGracePeriodSeconds"] == 15
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert (
        f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}"
        == (runtime().args("USER")[0])
    )
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (port,) = main["ports"]
    assert main["readinessProbe"]["httpGet"]["port"] == port["name"]
    assert manifests["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    assert str(port["containerPort"]) == runtime().args("EXPOSE")[0]
    assert main["resources"]["requests"]
    assert main["resources"]["limits"]["memory"]

    # with a read-only root, everything written goes to the emptyDirs
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/var/lib/watchdog"]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert (
        volumes[mounts["/etc/watchdog"]]["configMap"]["name"]
        == (manifests["ConfigMap"]["metadata"]["name"])
    )


def test_every_secret_the_kubernetes_config_uses_comes_from_the_secret() -> None:
    env = {e["name"]: e for e in container()["env"]}
    state = env["WATCHDOG_STATE__URL"]["valueFrom"]["secretKeyRef"]
    assert state.get("optional", False) is False  # no per-replica SQLite when it is missing
    from_secret = {
        name: e["valueFrom"]["secretKeyRef"]["key"]
        for name, e in env.items()
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert set(ENV_REF.findall(configmap_config())) | {"WATCHDOG_STATE__URL"} == set(from_secret)
    example = secret_env_example(KUBERNETES / "secret.env.example")
    assert set(from_secret.values()) == set(example)
    assert all("CHANGE-ME" in value for value in example.values())


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str) -> int:
        if self.process.poll() is not None:
            raise AssertionError(f"the replica exited: {self.log.read_text()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2).status_code
        except httpx.TransportError:
            return 0


def healthcheck(port: int) -> int:
    """The image's HEALTHCHECK command, run here as Docker would run it in the container."""
    command = exec_form(runtime().args("HEALTHCHECK")[0])
    env = {**os.environ, "WATCHDOG_API__LISTEN": f"0.0.0.0:{port}"}
    command[0] = sys.executable if command[0] == "python" else command[0]
    return subprocess.run(command, env=env, capture_output=True, check=False).returncode


def postgres_url(dsn: str) -> str:
    """The test database's DSN as the postgresql:// URL a Secret holds."""
    part = {k: quote(str(v), safe="") for k, v in conninfo_to_dict(dsn).items() if v}
    password = f":{part['password']}" if "password" in part else ""
    port = part.get("port", "5432")
    return f"postgresql://{part['user']}{password}@{part['host']}:{port}/{part['dbname']}"


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        if replica.process.poll() is None:
            replica.process.kill()
        replica.process.wait()


def test_two_replicas_of_the_kubernetes_config_run_on_one_postgres_and_pass_their_probes(
    tmp_path: Path, pg_dsn: str, replicas: list[Replica]
) -> None:
    config = tmp_path / "watchdog.yaml"
    config.write_text(configmap_config())
    assert yaml.safe_load(configmap_config())["rules"] == image_rules_path()
    args = [a.replace("/etc/watchdog/watchdog.yaml", str(config)) for a in container()["args"]]
    secrets = set(ENV_REF.findall(configmap_config()))
    base = {k: v for k, v in os.environ.items() if k not in secrets and "WATCHDOG_" not in k}
    # The pod's environment: the Secret's state URL and API token (the provider tokens stay
    # unset, so nothing here calls a real provider), the image's listen address, and the
    # image's rules, which live at image_rules_path() in the image and in config/ here.
    base |= {
        "WATCHDOG_STATE__URL": postgres_url(pg_dsn),
        "WATCHDOG_API_TOKEN": TOKEN,
        "WATCHDOG_RULES": str(REPO / "config/rules.yaml"),
    }
    listen = runtime().env()["WATCHDOG_API__LISTEN"]
    for number in range(kubernetes()["Deployment"]["spec"]["replicas"]):
        port = free_port()
        env = {**base, "WATCHDOG_API__LISTEN": listen.replace(":8080", f":{port}")}
        log = tmp_path / f"replica-{number}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "watchdog.cli", *args],
                cwd=tmp_path,  # the image's working directory
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        replicas.append(Replica(process, port, log))

    readiness = container()["readinessProbe"]["httpGet"]["path"]
    liveness = container()["livenessProbe"]["httpGet"]["path"]
    for replica in replicas:
        wait_for(lambda r=replica: r.get(readiness) == 200, 30, "the replica to be ready")
        assert replica.get(liveness) == 200
        assert healthcheck(replica.port) == 0

    first = replicas[0]
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=pod()["terminationGracePeriodSeconds"]) == 0, (
        first.log.read_text()
    )
    assert healthcheck(first.port) != 0  # Docker would now call the container unhealthy
    assert replicas[1].get(readiness) == 200


# --- Docker Compose ---


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def test_compose_starts_the_watchdog_once_postgres_is_healthy() -> None:
    services = compose()["services"]
    postgres, watchdog = services["postgres"], services["watchdog"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert watchdog["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (DEPLOY / watchdog["build"]["context"] / watchdog["build"]["dockerfile"]).is_file()

    url = httpx.URL(watchdog["environment"]["WATCHDOG_STATE__URL"])
    assert (url.scheme, url.host, url.port) == ("postgresql", "postgres", 5432)
    assert url.username == postgres["environment"]["POSTGRES_USER"]
    assert url.path == "/" + postgres["environment"]["POSTGRES_DB"]
    assert "${POSTGRES_PASSWORD}" in str(watchdog["environment"]["WATCHDOG_STATE__URL"])

    mounts = {m.split(":")[1]: m.split(":")[0] for m in watchdog["volumes"]}
    assert (DEPLOY / mounts["/etc/watchdog"] / "watchdog.yaml").is_file()
    assert mounts["/var/lib/watchdog"] in compose()["volumes"]
    assert any(m.endswith(":/var/lib/postgresql/data") for m in postgres["volumes"])

    # .env.example names every variable compose.yaml and the mounted config refer to
    example = secret_env_example(DEPLOY / ".env.example")
    assert watchdog["env_file"] == [".env"]
    used = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOY / "compose.yaml").read_text()))
    used |= set(ENV_REF.findall((DEPLOY / mounts["/etc/watchdog"] / "watchdog.yaml").read_text()))
    assert used == set(example)
    assert all("CHANGE-ME" in value for value in example.values())


def test_the_compose_config_is_a_valid_config_using_the_image_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = DEPLOY / "config" / "watchdog.yaml"
    assert yaml.safe_load(path.read_text())["rules"] == image_rules_path()
    monkeypatch.setenv("WATCHDOG_RULES", str(REPO / "config/rules.yaml"))
    monkeypatch.setenv("WATCHDOG_STATE__URL", "postgresql://watchdog:pw@postgres:5432/watchdog")
    loaded = load_config(path)
    assert loaded.settings.state.url.reveal().startswith("postgresql://")
    assert set(loaded.settings.targets) == {"backend"}


# --- systemd ---


def unit_settings() -> list[tuple[str, str]]:
    text = (DEPLOY / "systemd" / "rollback-watchdog.service").read_text()
    lines = [line for line in text.splitlines() if "=" in line and not line.startswith("#")]
    return [(key, value) for key, _, value in (line.partition("=") for line in lines)]


def verify(unit: Path) -> tuple[int, str]:
    """``systemd-analyze verify`` of ``unit``; its output lines that are about this unit."""
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    about = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    return done.returncode, "\n".join(about)


def test_the_systemd_unit_reloads_on_hup_stops_in_time_and_is_locked_down() -> None:
    settings = unit_settings()
    single = dict(settings)
    assert single["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert single["TimeoutStopSec"] == "15"
    assert single["Restart"] == "on-failure"
    assert single["RestartPreventExitStatus"] == "2"  # a bad config is not retried forever
    assert single["EnvironmentFile"] == "/etc/watchdog/watchdog.env"
    assert single["DynamicUser"] == "yes"
    assert single["StateDirectory"] == "watchdog"
    assert single["WorkingDirectory"] == "/var/lib/watchdog"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }.items():
        assert single[key] == value, key
    assert ("SystemCallFilter", "@system-service") in settings
    binary, *args = shlex.split(single["ExecStart"])
    assert binary == "/opt/rollback-watchdog/bin/watchdog"  # the venv deploy/README.md makes
    assert args == ["run", "--config", "/etc/watchdog/watchdog.yaml"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # The unit names where the install puts watchdog; verify checks that the binary exists,
    # so a copy points at the one installed here and everything else is verified as written.
    source = (DEPLOY / "systemd" / "rollback-watchdog.service").read_text()
    installed = Path(sys.executable).with_name("watchdog")
    assert installed.is_file()
    unit = tmp_path / "rollback-watchdog.service"
    unit.write_text(source.replace("/opt/rollback-watchdog/bin/watchdog", str(installed)))
    code, complaints = verify(unit)
    assert (code, complaints) == (0, "")

    # and verify does catch a mistake on this systemd, so the pass above means something
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strct"))
    assert "strct" in verify(unit)[1]


# --- the CI snippets that announce a deploy ---


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Receiver:
    """A local HTTP endpoint that records each request and answers with ``status``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status = 202
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append(
                    Received("POST", self.path, dict(self.headers.items()), json.loads(raw))
                )
                answer = json.dumps({"watch_id": "w-1", "state": "baseline"}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()
    thread.join()


needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "curl", "jq")),
    reason="the CI snippets need bash, curl and jq",
)
ANNOUNCED = {
    "TARGET": "backend",
    "DEPLOYMENT_ID": "dep-2",
    "PREVIOUS_DEPLOYMENT_ID": "dep-1",
    "RELEASE": "4f2c9e1",
    "COMMIT": "4f2c9e1a8d3b",
    "DEPLOYED_AT": "2026-01-28T12:00:00Z",
    "MIGRATION_VERSION": "20260128_add_index",
}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ANNOUNCED and "WATCHDOG" not in k}


def the_deploy(received: Received) -> DeployIn:
    """The one request: a bearer-authorized JSON POST to /api/deploys the API accepts."""
    assert (received.method, received.path) == ("POST", "/api/deploys")
    assert received.headers["Authorization"] == f"Bearer {TOKEN}"
    assert received.headers["Content-Type"] == "application/json"
    return DeployIn.model_validate(received.body)  # extra="forbid": a misspelt field fails


@needs_tools
def test_announce_sh_posts_every_known_field_with_the_bearer_token(receiver: Receiver) -> None:
    env = (
        clean_env() | ANNOUNCED | {"WATCHDOG_URL": receiver.url + "/", "WATCHDOG_API_TOKEN": TOKEN}
    )
    done = subprocess.run(
        [str(DEPLOY / "ci" / "announce.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["watch_id"] == "w-1"
    (received,) = receiver.requests
    deploy = the_deploy(received)
    assert received.body == {k.lower(): v for k, v in ANNOUNCED.items()}
    assert deploy.deployed_at is not None
    assert deploy.deployed_at.utcoffset() is not None
    assert TOKEN not in done.stdout + done.stderr


@needs_tools
def test_announce_sh_leaves_out_what_is_unknown_and_fails_when_refused(
    receiver: Receiver,
) -> None:
    receiver.status = 401
    env = clean_env() | {
        "WATCHDOG_URL": receiver.url,
        "WATCHDOG_API_TOKEN": TOKEN,
        "TARGET": "backend",
        "DEPLOYMENT_ID": "dep-3",
        "RELEASE": "",
    }
    done = subprocess.run(
        [str(DEPLOY / "ci" / "announce.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    (received,) = receiver.requests  # a refusal is not retried
    the_deploy(received)
    assert received.body == {"target": "backend", "deployment_id": "dep-3"}


@needs_tools
def test_announce_sh_names_what_is_missing(receiver: Receiver) -> None:
    env = clean_env() | {"WATCHDOG_URL": receiver.url, "WATCHDOG_API_TOKEN": TOKEN}
    done = subprocess.run(
        [str(DEPLOY / "ci" / "announce.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "TARGET" in done.stderr
    assert receiver.requests == []


@needs_tools
def test_the_github_actions_step_announces_the_deploy(receiver: Receiver) -> None:
    (step,) = yaml.safe_load((DEPLOY / "ci" / "deploy-announce.yml").read_text())
    assert step["shell"] == "bash"
    # GitHub fills in the ${{ }} expressions; here they get test values
    filled = {
        "WATCHDOG_URL": receiver.url,
        "WATCHDOG_API_TOKEN": TOKEN,
        "DEPLOYMENT_ID": "dep-2",
        "RELEASE": "4f2c9e1",
        "COMMIT": "4f2c9e1",
    }
    env = {k: filled.get(k, str(v)) for k, v in step["env"].items()}
    assert not [v for v in env.values() if "${{" in v]
    done = subprocess.run(
        # what GitHub runs for `shell: bash`
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env=clean_env() | env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (received,) = receiver.requests
    deploy = the_deploy(received)
    assert (deploy.target, deploy.deployment_id, deploy.release, deploy.commit) == (
        "backend",
        "dep-2",
        "4f2c9e1",
        "4f2c9e1",
    )
    assert deploy.deployed_at is not None
    assert "previous_deployment_id" not in received.body  # left empty: left out
