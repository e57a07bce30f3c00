"""``skyscript build --out s3://...`` against moto's S3 server on loopback (with IAM auth on).

Checks: interrupted and resumed builds in object storage give exactly the samples of a local build
(none lost, none twice, byte-identical tars); the done marker is uploaded last; bad credentials, a
missing bucket or an unreachable endpoint fail at start-up in one line (exit 2), before any work;
secrets never reach run.json or the output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.build import BuildInputs, build, prepare_run, run_shard
from pipeline.cli import app
from pipeline.config import load_config
from pipeline.errors import OutputConflictError
from storage import shards as sh
from storage.remote import RemoteOut
from tests.fakes import FakeArea, make_fake_area

BUCKET = "skyscript-test"
REGION = "us-east-1"
MOTO_SERVER = Path(sys.executable).with_name("moto_server")


@dataclasses.dataclass(frozen=True)
class S3Server:
    endpoint: str
    key: str
    secret: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """moto's server in a subprocess with request authentication on (only IAM users' keys work)."""
    boto3 = pytest.importorskip("boto3")
    if not MOTO_SERVER.exists():
        pytest.skip(f"moto's server is not installed ({MOTO_SERVER} missing): pip install 'moto[server]'")
    port = _free_port()
    # The first three requests (creating the IAM user, its policy, its key) run unauthenticated.
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"moto's S3 server did not start on 127.0.0.1:{port}")
                time.sleep(0.1)
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="builder")
        iam.put_user_policy(UserName="builder", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="builder")["AccessKey"]
        server = S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        _client(server).create_bucket(Bucket=BUCKET)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _client(server: S3Server) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id=server.key, aws_secret_access_key=server.secret)


def _aws_env(server: S3Server) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": server.key,
            "AWS_SECRET_ACCESS_KEY": server.secret, "AWS_DEFAULT_REGION": REGION}


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    for k, v in _aws_env(s3_server).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))  # the staging folder lives here
    return s3_server


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> FakeArea:
    return make_fake_area(tmp_path_factory.mktemp("s3_area"), seed=3)


def _keys(server: S3Server, prefix: str) -> list[str]:
    pages = _client(server).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    return sorted(o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", []))


def _download(server: S3Server, prefix: str, dest: Path) -> Path:
    client = _client(server)
    for name in _keys(server, prefix):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, f"{prefix}/{name}", str(dest / name))
    return dest


def _samples(out: Path) -> dict[str, dict]:
    return {s["key"]: s for s in sh.iter_samples(out / "shards")}


def _quiet(_msg: str) -> None:
    pass


def _assert_same_build(local: Path, remote_copy: Path) -> None:
    a, b = _samples(local), _samples(remote_copy)
    assert a and a.keys() == b.keys()
    for k in a:
        assert a[k]["jpg"] == b[k]["jpg"] and a[k]["json"] == b[k]["json"]
    keys = [r["key"] for r in sh.read_rows(remote_copy / "shards").to_pylist()]
    assert len(keys) == len(set(keys))  # none twice
    assert sh.done_shards(local / "shards") == sh.done_shards(remote_copy / "shards")
    for i in sh.done_shards(local / "shards"):
        name = f"{i:05d}.tar"
        assert (local / "shards" / name).read_bytes() == (remote_copy / "shards" / name).read_bytes()


def test_interrupted_s3_build_resumes_to_the_local_samples(area: FakeArea, s3: S3Server, tmp_path: Path) -> None:
    tiny = load_config(preset="tiny")
    cfg = tiny.replace(shards=dataclasses.replace(tiny.shards, shard_size=4))
    clean = tmp_path / "clean"
    build(BuildInputs(str(area.osm), f"local:{area.imagery_dir}", str(clean)), cfg, log=_quiet)

    url = f"s3://{BUCKET}/resume"
    inputs = BuildInputs(str(area.osm), f"local:{area.imagery_dir}", url)
    plan = prepare_run(inputs, cfg, log=_quiet)
    assert len(plan.tasks) >= 3 and plan.context.out == url  # workers get the URL, not a local path
    prepared = _keys(s3, "resume")
    assert {"run.json", "objects.parquet", "plan/index.parquet", "plan/00000.parquet"} <= set(prepared)
    run_shard(plan.tasks[0], plan.context)

    class Boom(Exception):
        pass

    calls = {"n": 0}

    def explode() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Boom  # dies half-way through shard 1

    with pytest.raises(Boom):
        run_shard(plan.tasks[1], plan.context, on_object=explode)
    shard_keys = [k for k in _keys(s3, "resume") if k.startswith("shards/")]
    assert shard_keys == ["shards/00000.parquet", "shards/00000.tar", "shards/00000_stats.json"]
    assert [t.index for t in plan.pending] == list(range(1, len(plan.tasks)))

    # A worker on another machine: an empty staging folder, only the URL in its context.
    shutil.rmtree(RemoteOut(url).staging)
    run_shard(plan.tasks[2], plan.context)
    assert "shards/00002_stats.json" in _keys(s3, "resume")

    summary = build(inputs, cfg, log=_quiet)  # the same command again
    assert summary["shards_done"] == summary["shards_total"] == len(plan.tasks)
    _assert_same_build(clean, _download(s3, "resume", tmp_path / "copy"))
    staged = RemoteOut(url).staging / "shards"
    assert not [p for p in staged.iterdir() if p.suffix in (".tar", ".parquet")]  # uploaded, then freed
    run = json.loads(_client(s3).get_object(Bucket=BUCKET, Key="resume/run.json")["Body"].read())
    assert run["inputs"]["out"] == url and run["summary"]["finished"]
    text = json.dumps(run)
    assert s3.secret not in text and s3.key not in text


def test_s3_output_refuses_another_build_and_overwrites(area: FakeArea, s3: S3Server) -> None:
    cfg = load_config(preset="tiny", max_objects=4)
    inputs = BuildInputs(str(area.osm), f"local:{area.imagery_dir}", f"s3://{BUCKET}/conflict")
    build(inputs, cfg, log=_quiet)
    before = _keys(s3, "conflict")
    with pytest.raises(OutputConflictError, match="--overwrite"):
        build(inputs, cfg.replace(seed=99), log=_quiet)
    assert _keys(s3, "conflict") == before  # nothing deleted by the refused run
    summary = build(inputs, cfg.replace(seed=99), overwrite=True, log=_quiet)
    assert summary["shards_done"] == summary["shards_total"]
    run = json.loads(_client(s3).get_object(Bucket=BUCKET, Key="conflict/run.json")["Body"].read())
    assert run["seed"] == 99


def test_outputs_without_run_json_are_refused(area: FakeArea, s3: S3Server) -> None:
    _client(s3).put_object(Bucket=BUCKET, Key="orphan/shards/00000_stats.json", Body=b"{}")
    inputs = BuildInputs(str(area.osm), f"local:{area.imagery_dir}", f"s3://{BUCKET}/orphan")
    with pytest.raises(OutputConflictError, match=r"no run\.json"):
        build(inputs, load_config(preset="tiny"), log=_quiet)


def _cli(area: FakeArea, out: str) -> list[str]:
    return ["build", "--osm", str(area.osm), "--imagery", f"local:{area.imagery_dir}", "--out", out,
            "--preset", "tiny", "--max-objects", "4"]


def test_cli_builds_to_s3(area: FakeArea, s3: S3Server) -> None:
    res = CliRunner().invoke(app, _cli(area, f"s3://{BUCKET}/cli"))
    assert res.exit_code == 0, res.output
    assert "samples written" in res.output and f"s3://{BUCKET}/cli" in res.output
    assert "shards/00000_stats.json" in _keys(s3, "cli")
    assert s3.secret not in res.output


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "wrong-secret-value"}, "access denied"),
        ({"AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY0000000"}, "access denied"),
        ({"bucket": "no-such-bucket"}, "does not exist"),
        ({"AWS_ENDPOINT_URL": "closed-port"}, "unreachable"),
    ],
)
def test_bad_s3_settings_fail_at_start_in_one_line(
    area: FakeArea, s3: S3Server, monkeypatch: pytest.MonkeyPatch, change: dict[str, str], needle: str
) -> None:
    bucket = change.pop("bucket", BUCKET)
    for k, v in change.items():
        monkeypatch.setenv(k, f"http://127.0.0.1:{_free_port()}" if v == "closed-port" else v)
    res = CliRunner().invoke(app, _cli(area, f"s3://{bucket}/bad"))
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    for secret in (s3.secret, "wrong-secret-value"):
        assert secret not in res.output
    assert _keys(s3, "bad") == []  # no work done, nothing written


@pytest.mark.slow
def test_sigkill_mid_s3_build_then_rerun_is_lossless(area: FakeArea, s3: S3Server, tmp_path: Path) -> None:
    cfg = tmp_path / "small_shards.yaml"
    cfg.write_text("shards:\n  shard_size: 2\n")
    clean = tmp_path / "clean"
    url = f"s3://{BUCKET}/killed"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    base = [sys.executable, "-m", "pipeline.cli", "build", "--osm", str(area.osm), "--imagery",
            f"local:{area.imagery_dir}", "--preset", "tiny", "--config", str(cfg)]
    subprocess.run([*base, "--out", str(clean)], check=True, env=env, capture_output=True)
    total = len(sh.done_shards(clean / "shards"))
    proc = subprocess.Popen([*base, "--out", url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def done() -> list[str]:
        return [k for k in _keys(s3, "killed") if k.endswith("_stats.json")]

    deadline = time.monotonic() + 120
    while not done() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = len(done())
    assert 0 < done_at_kill < total, "the build was not interrupted mid-way"
    res = subprocess.run([*base, "--out", url], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert s3.secret not in res.stdout + res.stderr
    _assert_same_build(clean, _download(s3, "killed", tmp_path / "copy"))


@pytest.mark.slow
def test_score_filter_split_export_train_eval_on_s3(
    area: FakeArea, s3: S3Server, tiny_ckpt: Path, tmp_path: Path
) -> None:
    tiny = load_config(preset="tiny")
    cfg = tiny.replace(caption=dataclasses.replace(tiny.caption, unknown_tags="drop"),
                       shards=dataclasses.replace(tiny.shards, shard_size=4))
    url, local = f"s3://{BUCKET}/scored", tmp_path / "local"
    for out in (url, str(local)):
        build(BuildInputs(str(area.osm), f"local:{area.imagery_dir}", out), cfg, log=_quiet)
    score = ["--model", "tiny-score-test", "--pretrained", str(tiny_ckpt), "--device", "cpu", "--workers", "0",
             "--batch-size", "4"]
    outputs = {}
    for out in (url, str(local)):
        res = CliRunner().invoke(app, ["score", out, *score])
        assert res.exit_code == 0, res.output + repr(res.exception)
        outputs[out] = res.output
        res = CliRunner().invoke(app, ["filter", out, "--top", "50"])
        assert res.exit_code == 0, res.output + repr(res.exception)
    assert "scored" in outputs[url] and outputs[url].split("pairs")[0] == outputs[str(local)].split("pairs")[0]
    names = _keys(s3, "scored")
    n_shards = len([n for n in names if n.startswith("shards/") and n.endswith("_stats.json")])
    assert len([n for n in names if n.startswith("scores/") and n.endswith("_stats.json")]) == n_shards
    assert {"selections/top50.parquet", "selections/top50.json"} <= set(names)
    copy = _download(s3, "scored", tmp_path / "copy")
    assert pq.read_table(copy / "selections/top50.parquet").equals(pq.read_table(local / "selections/top50.parquet"))
    again = CliRunner().invoke(app, ["score", url, *score])  # resumed from the remote markers
    assert again.exit_code == 0 and "scored 0 pairs" in again.output, again.output
    assert s3.secret not in outputs[url] + again.output
    train = CliRunner().invoke(app, ["train", "skyclip", "--data", url, "--selection", "top50", "--model",
                                     "tiny-score-test", "--pretrained", str(tiny_ckpt), "--out", str(tmp_path / "run"),
                                     "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--workers", "0"])
    assert train.exit_code == 0, train.output + repr(train.exception)
    ckpt = train.output.strip().splitlines()[-1]
    assert ckpt.endswith("epoch_1.pt")
    for out in (url, str(local)):
        res = CliRunner().invoke(app, ["split", out, "--test-frac", "0.3", "--block-deg", "0.0003"])
        assert res.exit_code == 0, res.output + repr(res.exception)
    split = _client(s3).get_object(Bucket=BUCKET, Key="scored/split.parquet")["Body"].read()
    (tmp_path / "split.parquet").write_bytes(split)
    assert pq.read_table(tmp_path / "split.parquet").equals(pq.read_table(local / "split.parquet"))
    exported = CliRunner().invoke(app, ["export", url, "--selection", "top50", "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output + repr(exported.exception)
    assert list((tmp_path / "export").glob("SkyScript_*_top50pct_*.csv"))
    resh = CliRunner().invoke(app, ["filter", url, "--top", "50", "--reshard", str(tmp_path / "kept")])
    assert resh.exit_code == 0, resh.output + repr(resh.exception)
    kept = pq.read_table(local / "selections/top50.parquet").num_rows
    assert len(_samples(tmp_path / "kept")) == kept > 0
    res = CliRunner().invoke(app, ["eval", "retrieval", "--checkpoint", ckpt, "--data", url, "--split", "all",
                                   "--device", "cpu", "--workers", "0", "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert json.loads((tmp_path / "r.json").read_text())["samples"] >= 2


@pytest.mark.slow
@pytest.mark.timeout(600)  # a loaded CI machine starts Dask processes slowly
def test_dask_workers_without_shared_staging_build_to_s3(area: FakeArea, s3: S3Server, tmp_path: Path) -> None:
    """`dask scheduler` + 2 `dask worker`s, each with its own cache (so its own staging folder):
    workers fetch their plan files from S3 and upload their shards; the samples equal a local build."""
    from dask.distributed import Client

    from tests.ops.conftest import BIN, stop

    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text("shards:\n  shard_size: 3\ncaption:\n  unknown_tags: drop\n")
    clean = tmp_path / "clean"
    build(BuildInputs(str(area.osm), f"local:{area.imagery_dir}", str(clean)), load_config(cfg_file, preset="tiny"),
          log=_quiet)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for i in range(2):
        procs.append(subprocess.Popen(
            [str(BIN / "dask"), "worker", address, "--nthreads", "2", "--nworkers", "1", "--no-dashboard",
             "--name", f"w{i}", "--local-directory", str(tmp_path / f"w{i}")],
            env={**env, "SKYSCRIPT_CACHE": str(tmp_path / f"cache-w{i}")}, cwd=tmp_path, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        with Client(address, timeout="120s") as client:
            client.wait_for_workers(2, timeout=180)
        url = f"s3://{BUCKET}/dask"
        res = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "build", "--osm", str(area.osm), "--imagery",
             f"local:{area.imagery_dir}", "--out", url, "--preset", "tiny", "--config", str(cfg_file),
             "--executor", f"dask:{address}"],
            env={**env, "SKYSCRIPT_CACHE": str(tmp_path / "cache-driver")}, capture_output=True, text=True,
            timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    finally:
        for p in reversed(procs):
            stop(p)
    _assert_same_build(clean, _download(s3, "dask", tmp_path / "copy"))
    fetched = [p for i in range(2) for p in (tmp_path / f"cache-w{i}" / "staging").rglob("plan/0*.parquet")]
    assert fetched  # the workers read their plans from S3, not from the driver's staging folder
    left = [p for p in tmp_path.glob("cache-*/staging/*/shards/*") if p.suffix in (".tar", ".parquet")]
    assert not left


@pytest.mark.parametrize(
    ("args", "change", "needle"),
    [
        (["filter", "{url}", "--top", "50"], {"AWS_SECRET_ACCESS_KEY": "wrong-secret-value"}, "access denied"),
        (["export", "{url}", "--selection", "top50", "--out", "{tmp}"], {"bucket": "no-such-bucket"},
         "does not exist"),
        (["score", "{url}", "--device", "cpu"], {}, "no finished shards"),
    ],
)
def test_dataset_commands_on_bad_s3_fail_in_one_line(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], change: dict[str, str],
    needle: str,
) -> None:
    bucket = change.pop("bucket", BUCKET)
    for k, v in change.items():
        monkeypatch.setenv(k, v)
    url = f"s3://{bucket}/never-built"
    res = CliRunner().invoke(app, [a.format(url=url, tmp=tmp_path / "x") for a in args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and url in res.output and "Traceback" not in res.output
    assert "wrong-secret-value" not in res.output and s3.secret not in res.output


def test_killed_while_uploading_the_plan_replans_from_the_uploaded_objects(
    area: FakeArea, s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = load_config(preset="tiny", max_objects=6)
    clean = tmp_path / "clean"
    build(BuildInputs(str(area.osm), f"local:{area.imagery_dir}", str(clean)), cfg, log=_quiet)
    inputs = BuildInputs(str(area.osm), f"local:{area.imagery_dir}", f"s3://{BUCKET}/planning")
    real_put = RemoteOut._put

    def dies_at_the_index(self: RemoteOut, name: str) -> None:
        if name == "plan/index.parquet":
            raise KeyboardInterrupt  # killed between the plan files and the index
        real_put(self, name)

    monkeypatch.setattr(RemoteOut, "_put", dies_at_the_index)
    with pytest.raises(KeyboardInterrupt):
        build(inputs, cfg, log=_quiet)
    left = _keys(s3, "planning")
    assert "objects.parquet" in left and "plan/index.parquet" not in left
    assert not [k for k in left if k.startswith("shards/")]
    monkeypatch.setattr(RemoteOut, "_put", real_put)
    messages: list[str] = []
    summary = build(inputs, cfg, log=messages.append)
    assert any("resuming: objects from" in m for m in messages)  # not acquired again
    assert summary["shards_done"] == summary["shards_total"]
    _assert_same_build(clean, _download(s3, "planning", tmp_path / "copy"))


def test_bad_osm_input_writes_nothing_to_s3(area: FakeArea, s3: S3Server, tmp_path: Path) -> None:
    from pipeline.errors import InputFileError

    inputs = BuildInputs(str(tmp_path / "missing.osm"), f"local:{area.imagery_dir}", f"s3://{BUCKET}/bad-osm")
    with pytest.raises(InputFileError, match=r"missing\.osm"):
        build(inputs, load_config(preset="tiny"), log=_quiet)
    assert _keys(s3, "bad-osm") == []  # the start-up probe was deleted again, nothing else written


def test_commands_without_object_storage_refuse_s3_out_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.demo import bundled_sample

    imagery = bundled_sample()[1]  # any real raster folder
    csv = tmp_path / "photos.csv"
    csv.write_text("id,lat,lon,taken\n1,60.17,24.94,2020-06-01\n")
    res = CliRunner().invoke(app, ["build-graft", "--photos", str(csv), "--imagery", imagery, "--out",
                                   "s3://bucket/graft"])
    assert res.exit_code == 2 and "local folder only" in res.output, res.output
    assert not (Path.cwd() / "s3:").exists()
    res = CliRunner().invoke(app, ["satclip", "sample", "--n", "2", "--imagery", imagery, "--out",
                                   "s3://bucket/s2"])
    assert res.exit_code == 2 and "local folder only" in res.output, res.output
