"""``skyscript serve``: register every deployment with the Prefect server and run them here.

The server is the one in ``PREFECT_API_URL`` (environment or the active Prefect profile).
Each flow gets a deployment named ``default`` (``--name`` changes it), so a build starts with
``prefect deployment run build-skyscript/default -p osm=FILE -p imagery=local:DIR -p out=DIR``.
The work-pool route (a Prefect worker, as in the compose stack) uses ``prefect.yaml`` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli_util import err_console, friendly_errors
from pipeline.errors import BadInputError

if TYPE_CHECKING:
    from prefect import Flow

DEFAULT_DEPLOYMENT = "default"


def all_flows() -> list[Flow[Any, Any]]:
    """Every flow the toolkit serves."""
    from flows.build import build_skyscript_flow
    from flows.steps import score_flow, train_skyclip_flow, train_tags_flow

    return [build_skyscript_flow, score_flow, train_skyclip_flow, train_tags_flow]


def check_api(url: str | None, timeout_s: float = 10.0) -> str:
    """The API URL if a Prefect server answers there; a one-line error otherwise."""
    import requests

    if not url:
        raise BadInputError(
            "PREFECT_API_URL is not set: start a server (`prefect server start`) and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    try:
        resp = requests.get(url.rstrip("/") + "/health", timeout=timeout_s)
    except requests.RequestException as exc:
        raise BadInputError(f"Prefect API at {url} is unreachable ({type(exc).__name__}); is the server "
                            "running and PREFECT_API_URL right?") from None
    if resp.status_code != 200:
        raise BadInputError(f"Prefect API at {url} answered HTTP {resp.status_code} on /health; check "
                            "PREFECT_API_URL (it ends in /api)")
    return url


@friendly_errors
def serve_command(
    name: Annotated[str, typer.Option(help="Deployment name for every flow.")] = DEFAULT_DEPLOYMENT,
    limit: Annotated[int | None, typer.Option(help="Most flow runs executing at once here.")] = None,
) -> None:
    """Register and serve every deployment (build-skyscript/default, ...) on PREFECT_API_URL."""
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    url = check_api(PREFECT_API_URL.value())
    if limit is not None and limit < 1:
        raise BadInputError(f"--limit must be at least 1, got {limit}")
    from prefect.deployments.runner import EntrypointType

    # Module paths, not file paths: runs load the installed package whatever the working folder.
    deployments = [f.to_deployment(name=name, entrypoint_type=EntrypointType.MODULE_PATH) for f in all_flows()]
    err_console.print(f"serving {', '.join(f'{f.name}/{name}' for f in all_flows())} on {url} (Ctrl+C stops)")
    serve(*deployments, limit=limit, print_starting_message=True)  # type: ignore[arg-type]
