"""One HTTP session per remote imagery source, with bounded retries (429 and 5xx, any method).

pystac-client's default retries skip 429 and POST (a STAC search is a POST), so sources pass the
``urllib3.Retry`` made here. GDAL reads COGs with its own curl handles: :func:`gdal_env` holds
the settings that avoid directory listings, retry transient errors and reuse connections; it is
applied with ``rasterio.Env`` around reads (never through ``os.environ``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)
USER_AGENT = "skyscript-toolkit/0.1 (imagery)"


@dataclass(frozen=True)
class HttpPolicy:
    """Retry and timeout settings shared by the STAC API session and GDAL's COG reads."""

    attempts: int = 5
    backoff_s: float = 0.5  # urllib3: backoff_s * 2**(n-1), capped at max_backoff_s
    max_backoff_s: float = 30.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0


def make_retry(policy: HttpPolicy) -> Retry:
    """Bounded retries on connection errors, 429 and 5xx for every method (POST searches too)."""
    return Retry(
        total=policy.attempts - 1,
        connect=policy.attempts - 1,
        read=policy.attempts - 1,
        status=policy.attempts - 1,
        backoff_factor=policy.backoff_s,
        backoff_max=policy.max_backoff_s,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # None = retry any verb
        respect_retry_after_header=True,
        raise_on_status=False,  # the last response comes back; callers raise with its body
    )


def make_session(policy: HttpPolicy) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=make_retry(policy), pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def gdal_env(policy: HttpPolicy) -> dict[str, Any]:
    """GDAL options for windowed COG reads over HTTP (pass to ``rasterio.Env(**...)``)."""
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no listing of the "folder" of each COG
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
        "GDAL_HTTP_MAX_RETRY": str(policy.attempts - 1),
        "GDAL_HTTP_RETRY_DELAY": str(policy.backoff_s),
        "GDAL_HTTP_TIMEOUT": str(int(policy.read_timeout_s)),
        "GDAL_HTTP_CONNECTTIMEOUT": str(int(policy.connect_timeout_s)),
        "GDAL_HTTP_MULTIRANGE": "YES",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_VERSION": "2",  # HTTP/2 multiplexes range requests where the server allows it
        "VSI_CACHE": "TRUE",
        "GDAL_INGESTED_BYTES_AT_OPEN": "32768",  # one request reads the header of a typical COG
        "GDAL_HTTP_USERAGENT": USER_AGENT,
    }
