"""Build output in object storage (``--out s3://bucket/prefix``) through a local staging mirror.

The build core writes to a local folder as it always does; :class:`RemoteOut` maps an ``s3://`` URL
to a staging folder under the cache root and moves files between the two at a few fixed points:

- :meth:`RemoteOut.pull` (prepare time): the remote ``run.json`` and plan index (``objects.parquet``
  too when no plan exists yet) come down, so the usual identity check and resume decide;
- :meth:`RemoteOut.push_prepared`: ``run.json`` (the claim), ``objects.parquet``, each
  ``plan/NNNNN.parquet``, then ``plan/index.parquet`` (the plan exists iff it does), then ``run.json``;
- :meth:`RemoteOut.push_shard`: the shard's tar, then its parquet, then ``NNNNN_stats.json`` *last*,
  so the done marker means what it means locally (an S3 PUT is atomic: an object is whole or absent);
  the local copies are deleted afterwards, so the staging folder never holds more than the shards in
  flight.

The remote store is the truth: a shard is done iff its stats object exists there, and a worker on
another machine (no shared filesystem) fetches only its own plan file. Endpoint, keys and region come
from the usual AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``), read at call time; they never reach run.json or logs,
and every error message is scrubbed of them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.cache import cache_dir
from pipeline.errors import BadInputError, InputFileError, OutputConflictError, SkyScriptError

SCHEME = "s3://"
PLAN_DIR = "plan"
INDEX = "plan/index.parquet"
# What a build leaves besides run.json (as pipeline.runinfo.BUILD_OUTPUTS, for the remote side).
BUILD_OUTPUTS = ("objects.parquet", "plan", "shards", "scores", "selections", "embeddings")
_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")
_HINT = "Pass --overwrite to delete it and start over, or choose another --out."


class RemoteStorageError(SkyScriptError, OSError):
    """Object storage refused or failed an operation (unreachable endpoint, credentials, bucket)."""


def is_remote(out: str | os.PathLike[str]) -> bool:
    return str(out).startswith(SCHEME)


def scrub(text: str) -> str:
    """``text`` with the values of the AWS secret variables masked (error messages reach logs)."""
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _why(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return scrub(f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__)


def filesystem() -> Any:
    """An s3fs filesystem configured from the AWS variables (fsspec caches one per configuration)."""
    import s3fs

    client_kwargs: dict[str, str] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        client_kwargs["region_name"] = region
    return s3fs.S3FileSystem(
        key=os.environ.get("AWS_ACCESS_KEY_ID") or None,
        secret=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
        token=os.environ.get("AWS_SESSION_TOKEN") or None,
        client_kwargs=client_kwargs,
        config_kwargs={"connect_timeout": 10, "read_timeout": 120, "retries": {"max_attempts": 3}},
        use_listings_cache=False,  # done markers appear while we run: never trust a cached listing
    )


def _endpoint_label() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


class RemoteOut:
    """One ``s3://bucket/prefix`` build output and its local staging folder."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise BadInputError(f"--out {url!r}: use s3://BUCKET/PREFIX for object storage")
        if "@" in parts.netloc:
            raise BadInputError("--out: put S3 credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                                "not in the URL")
        self.url = url.rstrip("/")
        self.root = f"{parts.netloc}{parts.path}".rstrip("/")  # bucket/prefix, as s3fs names it
        self.bucket = parts.netloc
        self.staging = cache_dir("staging", hashlib.sha256(self.url.encode()).hexdigest()[:16])
        self._pulled: set[str] = set()
        self._snapshot: dict[str, tuple[int, float]] = {}  # what mirror() left here (name: size, mtime)
        self._fs: Any = None

    @classmethod
    def for_out(cls, out: str | os.PathLike[str]) -> RemoteOut | None:
        """A :class:`RemoteOut` for an ``s3://`` output, None for a local folder."""
        return cls(str(out)) if is_remote(out) else None

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = filesystem()
        return self._fs

    def rpath(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _fail(self, what: str, exc: BaseException) -> RemoteStorageError:
        return RemoteStorageError(f"object storage {self.url}: {what} failed ({_why(exc)}) at {_endpoint_label()}")

    # ------------------------------------------------------------------ start-up

    def check(self, write: bool = True, label: str = "--out") -> Path:
        """The bucket answers and takes a write (a probe object, deleted again), or with ``write=False``
        a listing (read-only keys suffice); the staging folder.

        Raises :class:`BadInputError` with one line naming the endpoint and what to fix.
        """
        name = f"{label} {self.url}".strip()
        try:
            if write:
                probe = self.rpath(f".skyscript-probe-{uuid.uuid4().hex}")
                self.fs.pipe_file(probe, b"probe")
                self.fs.rm_file(probe)
            else:
                try:
                    self.fs.ls(self.root, detail=False)  # the prefix's top level: a few names
                except FileNotFoundError:
                    self.fs.ls(self.bucket, detail=False)  # no such prefix: does the bucket exist?
        except FileNotFoundError:
            raise BadInputError(
                f"{name}: bucket {self.bucket!r} does not exist at {_endpoint_label()}; create it first"
            ) from None
        except PermissionError as exc:
            raise BadInputError(
                f"{name}: access denied at {_endpoint_label()} ({_why(exc)}); check AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY and the bucket's policy"
            ) from None
        except Exception as exc:  # botocore's connection errors are not OSErrors
            raise BadInputError(
                f"{name}: object storage at {_endpoint_label()} is unreachable ({_why(exc)}); check "
                "AWS_ENDPOINT_URL and the network"
            ) from None
        self.staging.mkdir(parents=True, exist_ok=True)
        return self.staging

    # ------------------------------------------------------------------ transfers

    def _get(self, name: str) -> bool:
        """Download ``name`` into staging (atomically); False when it does not exist remotely."""
        local = self.staging / name
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp-{os.getpid()}")
        try:
            self.fs.get_file(self.rpath(name), str(tmp))
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            return False
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise self._fail(f"downloading {name}", exc) from None
        os.replace(tmp, local)
        return True

    def _put(self, name: str) -> None:
        try:
            self.fs.put_file(str(self.staging / name), self.rpath(name))
        except Exception as exc:
            raise self._fail(f"uploading {name}", exc) from None

    def _exists(self, name: str) -> bool:
        try:
            return bool(self.fs.exists(self.rpath(name)))
        except Exception as exc:
            raise self._fail(f"looking up {name}", exc) from None

    def pull(self, overwrite: bool = False) -> None:
        """Make the staging folder mirror the remote build state that prepare needs.

        The staging folder is emptied first: the remote store is the truth, and a leftover of an
        earlier run here (a shard that was never uploaded) must not count.
        """
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self._pulled.clear()
        if self._get("run.json"):
            self._pulled.add("run.json")
        if overwrite:
            return  # the remote outputs are deleted once the new build's inputs are known to be good
        if "run.json" not in self._pulled:
            left = self.leftover_outputs()
            if left:
                raise OutputConflictError(
                    f"{self.url!r} holds build outputs ({', '.join(left)}) but no run.json, so they cannot be "
                    f"checked against this build. {_HINT}"
                )
            return
        if self._get(INDEX):
            self._pulled.add(INDEX)
        elif self._get("objects.parquet"):  # a planner was killed: re-plan from the acquired objects
            self._pulled.add("objects.parquet")

    def leftover_outputs(self) -> list[str]:
        try:
            names = {p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)}
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._fail("listing the output", exc) from None
        return [n for n in BUILD_OUTPUTS if n in names]

    def clear(self) -> None:
        """Delete the remote build outputs (``--overwrite``), run.json last."""
        for name in (*BUILD_OUTPUTS, "run.json"):
            try:
                if self.fs.exists(self.rpath(name)):
                    self.fs.rm(self.rpath(name), recursive=True)
            except FileNotFoundError:
                continue
            except Exception as exc:
                raise self._fail(f"deleting {name}", exc) from None

    def push_prepared(self) -> None:
        """Upload what prepare made here (and was not pulled): claim, objects, plan files, index, run.json."""
        self._put("run.json")  # claims the prefix before any other output, as locally
        local_plan = sorted(p for p in (self.staging / PLAN_DIR).glob("[0-9]*.parquet")) \
            if (self.staging / PLAN_DIR).is_dir() else []
        names = ["objects.parquet", *(f"{PLAN_DIR}/{p.name}" for p in local_plan), INDEX]
        for name in names:
            if name not in self._pulled and (self.staging / name).is_file():
                self._put(name)
        self._put("run.json")

    def push_run(self) -> None:
        self._put("run.json")

    # ------------------------------------------------------------------ shards

    @staticmethod
    def _stats_name(index: int) -> str:
        from storage.shards import shard_name

        return f"shards/{shard_name(index)}_stats.json"

    def done_shards(self) -> set[int]:
        """Indices of the shards whose done marker exists remotely (one listing)."""
        try:
            names = self.fs.ls(self.rpath("shards"), detail=False)
        except FileNotFoundError:
            return set()
        except Exception as exc:
            raise self._fail("listing shards", exc) from None
        base = (n.rstrip("/").rsplit("/", 1)[-1] for n in names)
        return {int(b.split("_")[0]) for b in base if b.endswith("_stats.json") and b.split("_")[0].isdigit()}

    def shard_stats(self, index: int) -> dict[str, Any] | None:
        """The remote stats of a finished shard; None when the shard is not done."""
        try:
            return dict(json.loads(self.fs.cat_file(self.rpath(self._stats_name(index)))))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._fail(f"reading {self._stats_name(index)}", exc) from None

    def read_stats(self, indices: list[int]) -> list[dict[str, Any]]:
        """Stats of those of ``indices`` that are done, in order (fetched concurrently)."""
        done = self.done_shards()
        paths = [self.rpath(self._stats_name(i)) for i in indices if i in done]
        if not paths:
            return []
        try:
            blobs = self.fs.cat(paths)
        except Exception as exc:
            raise self._fail("reading shard stats", exc) from None
        return [json.loads(blobs[p]) for p in paths]

    def fetch_plan(self, index: int) -> None:
        """Shard ``index``'s plan file into staging unless it is there (a worker on another machine)."""
        from storage.shards import shard_name

        name = f"{PLAN_DIR}/{shard_name(index)}.parquet"
        if not (self.staging / name).is_file():
            self._get(name)  # absent remotely: plan_io names the damaged plan

    def push_shard(self, index: int) -> None:
        """Upload a written shard: tar, parquet, then the stats (done marker) last; free the local copies."""
        from storage.shards import shard_paths

        paths = shard_paths(self.staging / "shards", index)
        for kind in ("tar", "parquet", "stats"):
            self._put(f"shards/{paths[kind].name}")
        for kind in ("tar", "parquet", "stats"):
            paths[kind].unlink(missing_ok=True)

    # ------------------------------------------------------------------ dataset commands (score, filter)

    def _remote_files(self, pattern: str) -> dict[str, tuple[int, float]]:
        """``{name: (size, mtime)}`` of the remote files matching ``dir`` or ``dir/GLOB``."""
        folder, _, glob = pattern.partition("/")
        try:
            found = self.fs.find(self.rpath(folder), detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise self._fail(f"listing {folder}/", exc) from None
        files: dict[str, tuple[int, float]] = {}
        for path, info in found.items():
            name = path[len(self.root) + 1:]
            if info.get("type") == "directory" or (glob and not fnmatch.fnmatch(name.rsplit("/", 1)[-1], glob)):
                continue
            modified = info.get("LastModified")
            files[name] = (int(info.get("size") or 0), modified.timestamp() if modified is not None else 0.0)
        return files

    def mirror(self, pull: tuple[str, ...], push: tuple[str, ...] = ()) -> Path:
        """Make the staging folder hold the remote files of ``pull`` (``dir``, ``dir/GLOB`` or a file
        name): missing or changed ones are downloaded (concurrently), local ones the remote lacks are
        removed. Folders in ``push`` but not pulled are emptied, so :meth:`push_changed` uploads only
        what the command writes. Returns the staging folder.

        Locked (``filelock``): the ranks of a ``torchrun`` job mirror the same URL at the same time."""
        from filelock import FileLock

        self.staging.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.staging) + ".lock"):
            self._mirror(pull, push)
        return self.staging

    def _mirror(self, pull: tuple[str, ...], push: tuple[str, ...]) -> None:
        self._snapshot = {}
        pulled_dirs = {p.partition("/")[0] for p in pull}
        for folder in push:
            if folder not in pulled_dirs and (self.staging / folder).is_dir():
                shutil.rmtree(self.staging / folder)
            elif folder not in pulled_dirs and (self.staging / folder).is_file():
                (self.staging / folder).unlink()
        todo: list[tuple[str, float]] = []
        for pattern in pull:
            remote = self._remote_files(pattern)
            folder, _, glob = pattern.partition("/")
            target = self.staging / folder
            local = [target] if target.is_file() else target.rglob("*") if target.is_dir() else []
            for p in local:
                name = p.relative_to(self.staging).as_posix()
                if (p.is_file() and ".tmp-" not in p.name and name not in remote
                        and (not glob or fnmatch.fnmatch(p.name, glob))):
                    p.unlink()
            for name, (size, mtime) in remote.items():
                st = (self.staging / name).stat() if (self.staging / name).is_file() else None
                if st is None or not _same(st, (size, mtime)):
                    todo.append((name, mtime))
                self._snapshot[name] = (size, mtime)
        if not todo:
            return
        tmps = []
        for name, _ in todo:
            final = self.staging / name
            final.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(final.with_name(f".{final.name}.tmp-{os.getpid()}"))
        try:
            self.fs.get([self.rpath(n) for n, _ in todo], [str(t) for t in tmps])
        except Exception as exc:
            for t in tmps:
                t.unlink(missing_ok=True)
            raise self._fail(f"downloading {len(todo)} file(s)", exc) from None
        for (name, mtime), tmp in zip(todo, tmps, strict=True):
            os.replace(tmp, self.staging / name)
            os.utime(self.staging / name, (mtime, mtime))  # unchanged files are not fetched again

    def push_changed(self, folders: tuple[str, ...]) -> list[str]:
        """Upload the files of ``folders`` (or single files) written since :meth:`mirror`: data first,
        then every ``*_stats.json`` / ``*.json`` marker, so a remote marker never precedes its data."""
        snapshot = self._snapshot
        changed: list[str] = []
        for folder in folders:
            d = self.staging / folder
            for p in sorted(d.rglob("*")) if d.is_dir() else [d] if d.is_file() else []:
                if not p.is_file() or ".tmp-" in p.name:
                    continue
                name = p.relative_to(self.staging).as_posix()
                if name not in snapshot or not _same(p.stat(), snapshot[name]):
                    changed.append(name)
        changed.sort(key=lambda n: (n.endswith(".json"), n))
        for name in changed:
            self._put(name)
        return changed


def _same(st: os.stat_result, remote: tuple[int, float]) -> bool:
    """A local file still is the copy of a remote one (size, and mtime set from its LastModified)."""
    return st.st_size == remote[0] and abs(st.st_mtime - remote[1]) < 1e-3


@contextmanager
def dataset_folder(out: str | os.PathLike[str], pull: tuple[str, ...], push: tuple[str, ...]) -> Iterator[Path]:
    """A build output as a local folder for commands that read it (score, filter).

    A local path is yielded as it is. For ``s3://``: the bucket is checked (one-line error), the files
    of ``pull`` are mirrored into the staging folder, and on the way out what the command wrote in
    ``push`` is uploaded, also when it failed part-way (finished score files are kept, as locally).
    """
    remote = RemoteOut.for_out(out)
    if remote is None:
        yield Path(out)
        return
    remote.check(write=bool(push), label="")
    if any(p.partition("/")[0] == "shards" for p in pull) and not remote.done_shards():
        raise InputFileError(
            f"{remote.url!r} has no finished shards (no shards/NNNNN_stats.json); run or finish skyscript build first"
        )
    local = remote.mirror(pull, push)
    try:
        yield local
    finally:
        remote.push_changed(push)
