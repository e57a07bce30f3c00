"""Ground photo pixels: a local file or a URL, decoded, shorter side resized to 256, re-encoded.

Failures are values (``PhotoResult.error_code``), never exceptions: ``missing_file``,
``dead_url`` (404/410/other 4xx), ``fetch_failed`` (5xx/timeouts after retries), ``bad_image``
(not decodable), ``too_large``, ``no_pixels`` (neither a path nor a URL).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from PIL import Image, UnidentifiedImageError

from pipeline.retry import Retryable, RetryPolicy, retry_call

Image.MAX_IMAGE_PIXELS = 200_000_000  # photos are big, but not decompression bombs


@dataclass(frozen=True, slots=True)
class PhotoResult:
    jpeg: bytes | None
    error_code: str = ""
    error_message: str = ""
    size: tuple[int, int] | None = None  # (width, height) after resizing


def resize_short_side(img: Image.Image, short: int) -> Image.Image:
    w, h = img.size
    s = short / min(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC)


def encode_photo(data: bytes, short: int, quality: int) -> PhotoResult:
    try:
        with Image.open(io.BytesIO(data)) as im:
            img = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return PhotoResult(None, "bad_image", f"bad_image: cannot decode the photo ({type(exc).__name__})")
    img = resize_short_side(img, short)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return PhotoResult(buf.getvalue(), size=img.size)


class PhotoFetcher:
    """Reads photo bytes from disk or over HTTP (one session, bounded retries on 429/5xx)."""

    def __init__(self, *, short_side: int = 256, quality: int = 90, max_bytes: int = 30_000_000,
                 timeout: float = 20.0, policy: RetryPolicy | None = None) -> None:
        self.short_side = short_side
        self.quality = quality
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.policy = policy or RetryPolicy(attempts=3, base_delay=1.0, max_delay=10.0)
        self._session: requests.Session | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None
        return state

    def get(self, path: str | None, url: str | None) -> PhotoResult:
        if path:
            p = Path(path)
            if p.is_file():
                if p.stat().st_size > self.max_bytes:
                    return PhotoResult(None, "too_large", f"too_large: {p.name} is over {self.max_bytes} bytes")
                return encode_photo(p.read_bytes(), self.short_side, self.quality)
            if not url:
                return PhotoResult(None, "missing_file", f"missing_file: {path} does not exist")
        if url:
            return self._url(url)
        return PhotoResult(None, "no_pixels", "no_pixels: the photo has neither a file nor a URL")

    def _url(self, url: str) -> PhotoResult:
        if self._session is None:
            self._session = requests.Session()
        session = self._session

        def once(_attempt: int) -> bytes | PhotoResult:
            try:
                r = session.get(url, timeout=self.timeout)
            except requests.RequestException as exc:
                raise Retryable(f"{type(exc).__name__}") from None
            if r.status_code == 429 or r.status_code >= 500:
                raise Retryable(f"HTTP {r.status_code}")
            if r.status_code >= 400:
                return PhotoResult(None, "dead_url", f"dead_url: HTTP {r.status_code} for {url}")
            if len(r.content) > self.max_bytes:
                return PhotoResult(None, "too_large", f"too_large: {url} is over {self.max_bytes} bytes")
            return r.content

        try:
            got = retry_call(once, self.policy)
        except Retryable as exc:
            return PhotoResult(None, "fetch_failed", f"fetch_failed: {url} ({exc}) after {self.policy.attempts} tries")
        if isinstance(got, PhotoResult):
            return got
        return encode_photo(got, self.short_side, self.quality)
