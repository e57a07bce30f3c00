"""docker-compose.yml against the Compose Specification schema; the Dockerfile and prefect.yaml against the project.

No Docker daemon or compose plugin here: the file is interpolated as compose does (``${V}``,
``${V:-default}``, ``${V:?error}``, ``$$``) with the values of ``.env.example`` filled in, then
validated with jsonschema. ``docker compose config`` runs as well where the plugin exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml

from tests.ops.conftest import BIN, ROOT, PrefectServer

COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
LONG_RUNNING = ("postgres", "prefect-server", "prefect-worker", "dask-scheduler", "dask-worker", "minio")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution over a loaded YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        have = env.get(name)
        unset = have is None or (op is not None and op.startswith(":") and have == "")
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return have or ""

    return _VAR.sub(sub, value)


def env_example() -> dict[str, str]:
    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            env[k.strip()] = v.strip()
    return env


def filled_env() -> dict[str, str]:
    return {k: v or f"test-{k.lower()}" for k, v in env_example().items()}


def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_schema() -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    for doc in (raw(), interpolate(raw(), filled_env())):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def test_stack_has_every_service_health_checks_and_named_volumes() -> None:
    doc = interpolate(raw(), filled_env())
    services = doc["services"]
    for name in LONG_RUNNING:
        assert name in services, name
        assert "healthcheck" in services[name], f"{name} has no health check"
    declared = set(doc["volumes"])
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            assert source in declared, f"{name} mounts {source!r}, not a named volume"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert "minio" in services["prefect-worker"]["depends_on"]
    worker = " ".join(services["dask-worker"]["command"])
    assert "tcp://dask-scheduler:8786" in worker


def test_credentials_only_from_env_file() -> None:
    doc = raw()
    secretish = re.compile(r"PASSWORD|SECRET|ACCESS_KEY", re.IGNORECASE)
    for name, svc in doc["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if secretish.search(key) or "@" in str(value):
                assert "${" in str(value), f"{name}.{key} holds a literal credential"
    example = env_example()
    assert example["POSTGRES_PASSWORD"] == "" and example["MINIO_ROOT_PASSWORD"] == ""
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(raw(), {k: v for k, v in filled_env().items() if k != "POSTGRES_PASSWORD"})
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    assert used <= set(example), f"not in .env.example: {sorted(used - set(example))}"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_docker_compose_config_when_the_plugin_exists(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` plugin on this machine (the schema test above covers the file)")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in filled_env().items()))
    res = subprocess.run([docker, "compose", "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr


def test_dockerfile_installs_the_project_from_pyproject() -> None:
    text = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = set(re.findall(r"^COPY\s+(\S+)", text, re.MULTILINE))
    for package in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied, f"Dockerfile does not copy {package}"
    assert "pyproject.toml" in text and re.search(r"pip install \.\s*$", text, re.MULTILINE)
    # Every program the stack runs comes from that one dependency spec.
    deps = " ".join(project["project"]["dependencies"])
    assert "skyscript" in project["project"]["scripts"]
    assert "prefect" in deps and "dask[distributed]" in deps
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in dockerignore and ".env" in dockerignore


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_prefect_yaml_deploys_to_the_worker_pool(prefect_server: PrefectServer) -> None:
    env = prefect_server.env(SKYSCRIPT_APP_DIR=str(ROOT))
    services = raw()["services"]
    pool = services["prefect-worker"]["command"][services["prefect-worker"]["command"].index("--pool") + 1]
    # The stack's prefect-deploy service creates the pool with the CLI; the API is quicker here.
    made = requests.post(f"{prefect_server.api_url}/work_pools/", json={"name": pool, "type": "process"}, timeout=60)
    assert made.status_code in (201, 409), made.text
    res = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env=env, capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    api = prefect_server.api_url
    try:
        dep = requests.get(f"{api}/deployments/name/build-skyscript/default", timeout=30).json()
        assert dep["work_pool_name"] == pool
        assert dep["entrypoint"] == "flows/build.py:build_skyscript_flow"
        assert {"osm", "imagery", "out", "max_objects", "score_model", "top"} <= set(
            dep["parameter_openapi_schema"]["properties"])
        assert dep["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
    finally:  # leave the name free for `skyscript serve` in the other tests
        requests.delete(f"{api}/deployments/{dep['id']}", timeout=30)
