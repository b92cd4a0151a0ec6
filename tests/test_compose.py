"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file must be valid against the Compose specification (check-jsonschema's
vendored schema), each stage service must run a real ``storywatch`` command, and every
``STORYWATCH__*`` variable it sets must land on a real settings key: a typo there would
otherwise surface only when the container starts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from storywatch.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
CONFIG_IN_IMAGE = "/app/config/storywatch.yaml"
# Each stage service and the storywatch command it runs.
COMMANDS = {
    "ingest": ["ingest"],
    "enrich-embed": ["enrich", "--role", "embed"],
    "enrich-cluster": ["enrich", "--role", "cluster"],
    "alerts": ["alerts"],
}
STAGES = tuple(COMMANDS)
# What .env provides (placeholders from .env.example) when the stages load their config.
ENV_FILE = {
    line.split("=", 1)[0]: line.split("=", 1)[1]
    for line in (ROOT / ".env.example").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def _tool(name: str) -> str:
    """A console script of this virtualenv (where pytest runs), else one on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed; `pip install -e .[test]` provides it"
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # PyYAML resolves the <<: *stage merges
    assert isinstance(data, dict)
    return data


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    proc = _validate(COMPOSE)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # The validator does reject a broken file (so the check above means something).
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("condition: service_healthy", "condition: when_ready"))
    assert _validate(broken).returncode != 0


def test_stages_run_one_image_after_a_healthy_kafka(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(STAGES) <= set(services)
    images = {services[s]["image"] for s in STAGES}
    builds = {str(services[s]["build"]) for s in STAGES}
    assert len(images) == 1 and builds == {"."}, "one image, built from the Dockerfile"
    for stage in STAGES:
        svc = services[stage]
        assert svc["command"] == ["storywatch", *COMMANDS[stage], "--config", CONFIG_IN_IMAGE]
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["restart"] == "unless-stopped"
        assert svc["stop_grace_period"]
        assert svc["healthcheck"]["test"]
        assert any((e if isinstance(e, str) else e["path"]) == ".env" for e in svc["env_file"]), (
            "secrets come from .env"
        )
        assert svc["environment"]["STORYWATCH__BUS__KIND"] == "kafka"
        assert svc["environment"]["HF_HUB_OFFLINE"] == "1"
        assert any(v.endswith(":/var/lib/storywatch") for v in svc["volumes"]), "state survives restarts"
    assert services["enrich-embed"]["deploy"]["replicas"] >= 2, "embedding scales out"
    assert services["enrich-cluster"]["deploy"]["replicas"] == 1, "one story writer"


def test_postgres_is_the_shared_store_with_its_password_from_env(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:")
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?"), "never a literal password"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    password = ENV_FILE["POSTGRES_PASSWORD"]
    assert f":{password}@postgres:5432/{pg['environment']['POSTGRES_DB']}" in ENV_FILE["STORYWATCH_PG_DSN"]


def test_kafka_is_single_node_kraft_reachable_where_stages_look(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    controller_port = env["KAFKA_LISTENERS"].split("CONTROLLER://:")[1].split(",")[0]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:{controller_port}"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert "CONTROLLER:" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert env["CLUSTER_ID"], "KRaft storage is formatted with a fixed cluster id"
    assert kafka["healthcheck"]["test"]
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
    for stage in STAGES:
        servers = yaml.safe_load(compose["services"][stage]["environment"]["STORYWATCH__BUS__BOOTSTRAP_SERVERS"])
        assert servers == [advertised], "stages bootstrap from the address Kafka advertises"


@pytest.mark.parametrize("stage", STAGES)
def test_service_commands_are_real_cli_commands(compose: dict[str, Any], stage: str) -> None:
    """Runs the service's command with --help: a wrong option is a usage error (exit 2)."""
    command = compose["services"][stage]["command"]
    proc = subprocess.run([_tool("storywatch"), *command[1:], "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--config" in proc.stdout


def _storywatch_env(compose: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in STAGES:
        for name, value in compose["services"][stage]["environment"].items():
            if name.startswith(ENV_PREFIX):
                assert env.get(name, str(value)) == str(value), f"{name} differs between services"
                env[name] = str(value)
    assert env
    return env


def test_every_storywatch_variable_sets_a_real_settings_key(compose: dict[str, Any], tmp_path: Path) -> None:
    env = _storywatch_env(compose)
    minimal = tmp_path / "storywatch.yaml"
    minimal.write_text("{}\n")
    for config in (minimal, ROOT / "config" / "storywatch.yaml"):  # the image's default config too
        settings = load_settings(config, environ={**env, **ENV_FILE})
        for name, raw in env.items():
            value: Any = settings
            for part in name.removeprefix(ENV_PREFIX).lower().split("__"):
                value = getattr(value, part)
            expected = yaml.safe_load(raw)
            if isinstance(value, SecretStr):  # {env: NAME}: the value .env gives NAME
                assert value.get_secret_value() == ENV_FILE[expected["env"]], name
                continue
            assert value == (Path(expected) if isinstance(value, Path) else expected), name
        assert settings.bus.kind == "kafka"
        assert settings.store.kind == "postgres"
        assert settings.http.enabled, "the healthcheck needs the health endpoint"


def test_healthcheck_asks_the_port_the_service_serves(compose: dict[str, Any]) -> None:
    env = _storywatch_env(compose)
    port = env.get("STORYWATCH__HTTP__PORT", str(Settings().http.port))
    for stage in STAGES:
        assert f"127.0.0.1:{port}/healthz" in " ".join(compose["services"][stage]["healthcheck"]["test"])


def test_env_example_holds_only_placeholders() -> None:
    lines = [ln for ln in (ROOT / ".env.example").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    names = {ln.split("=", 1)[0] for ln in lines}
    assert {"SMTP_PASSWORD", "SLACK_WEBHOOK_URL"} <= names
    for line in lines:
        name, value = line.split("=", 1)
        assert "replace-me" in value, f"{name} must be an obvious placeholder"


def test_dockerfile_builds_from_slim_python_with_cpu_torch() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    torch = next(i for i, ln in enumerate(lines) if "pip install torch==" in ln)
    assert "--index-url https://download.pytorch.org/whl/cpu" in lines[torch]
    assert any(ln.startswith("RUN pip install .") for ln in lines[torch:]), "the package after torch"
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".git", "var"} <= ignored, "no secrets, virtualenv or state in the build context"
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"COPY source {source} missing"
                assert source not in ignored, f"COPY source {source} is excluded by .dockerignore"
