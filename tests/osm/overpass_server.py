"""A loopback Overpass server for tests and benchmarks.

It answers ``/api/status`` (the real recorded body, optionally saying "no free slot") and
``/api/interpreter`` by filtering a recorded response like Overpass would: tagged elements
in the query's bbox (either ``(s,w,n,e)`` or ``[bbox:s,w,n,e]``) and tag filters, then the
recursion (way nodes, relation member ways and their nodes). Faults are injected from a
script: ``429``, ``504``, ``remark``, ``truncated``, ``html``, ``hang``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATUS_OK = """Connected as: 8675309
Current time: 1970-01-01T00:00:00Z
Rate limit: 3
3 slots available now.
Currently running queries (pid, space limit, time limit, start time):
"""
STATUS_BUSY = """Connected as: 8675309
Current time: 1970-01-01T00:00:00Z
Rate limit: 3
Slot available after: 1970-01-01T00:00:01Z, in 1 seconds.
Slot available after: 1970-01-01T00:00:02Z, in 2 seconds.
Slot available after: 1970-01-01T00:00:02Z, in 2 seconds.
Currently running queries (pid, space limit, time limit, start time):
"""
_NUM = r"-?\d+(?:\.\d+)?"
_BBOX = re.compile(rf"\[bbox:({_NUM}),({_NUM}),({_NUM}),({_NUM})\]|\(({_NUM}),({_NUM}),({_NUM}),({_NUM})\)")
_TAG = re.compile(r'\["([^"]+)"(?:="([^"]*)")?\]')


class MiniOverpass:
    """Answers queries over one recorded element list (independent of the client's code)."""

    def __init__(self, elements: Iterable[dict[str, Any]]) -> None:
        self.elements = list(elements)
        self.nodes = {e["id"]: e for e in self.elements if e["type"] == "node"}
        self.ways = {e["id"]: e for e in self.elements if e["type"] == "way"}

    def _in(self, box: tuple[float, float, float, float] | None, node_ids: Iterable[int]) -> bool:
        if box is None:
            return True
        s, w, n, e = box
        for nid in node_ids:
            node = self.nodes.get(nid)
            if node is not None and s <= node["lat"] <= n and w <= node["lon"] <= e:
                return True
        return False

    def _located(self, el: dict[str, Any], box: tuple[float, float, float, float] | None) -> bool:
        if el["type"] == "node":
            return self._in(box, [el["id"]])
        if el["type"] == "way":
            return self._in(box, el["nodes"])
        refs: list[int] = []
        for m in el.get("members", []):
            refs += self.ways.get(m["ref"], {}).get("nodes", []) if m["type"] == "way" else [m["ref"]]
        return self._in(box, refs)

    def answer(self, query: str) -> dict[str, Any]:
        m = _BBOX.search(query)
        box = None
        if m:
            vals = [float(v) for v in m.groups() if v is not None]
            box = (vals[0], vals[1], vals[2], vals[3])
        tags = _TAG.findall(query)
        body = []
        for el in self.elements:
            t = el.get("tags") or {}
            if not t or (tags and not any(k in t and (not v or t[k] == v) for k, v in tags)):
                continue
            if self._located(el, box):
                body.append(el)
        down: dict[tuple[str, int], dict[str, Any]] = {}
        for el in body:
            refs = el.get("nodes", [])
            for m_ in el.get("members", []):
                if m_["type"] == "way" and m_["ref"] in self.ways:
                    down[("way", m_["ref"])] = _skel(self.ways[m_["ref"]])
                    refs = refs + self.ways[m_["ref"]]["nodes"]
            for nid in refs:
                if nid in self.nodes:
                    down[("node", nid)] = _skel(self.nodes[nid])
        return {"version": 0.6, "generator": "Overpass API (fixture)", "elements": body + list(down.values())}


def _skel(el: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in el.items() if k != "tags"}


class FixtureState:
    def __init__(self, data: MiniOverpass, status_text: str, slots: int) -> None:
        self.data = data
        self.status_text = status_text
        self.slots = slots
        self.faults: list[str] = []  # consumed in order, then "ok"
        self.fault_rate: dict[str, float] = {}  # random faults (benchmark)
        self.busy_status_calls = 0  # the next N status calls report no free slot
        self.no_slot = False
        self.violations = 0  # interpreter requests while the last status said "no slot"
        self.in_flight = 0
        self.max_in_flight = 0
        self.counts: Counter[str] = Counter()
        self.hang_s = 5.0
        self.latency_s = 0.0  # every interpreter answer takes at least this long (a busy server)
        self.queries: list[str] = []
        self.lock = threading.Lock()
        self.rng = random.Random(0)

    def next_fault(self) -> str:
        with self.lock:
            if self.faults:
                return self.faults.pop(0)
            for name, p in self.fault_rate.items():
                if self.rng.random() < p:
                    return name
            return "ok"


class _Handler(BaseHTTPRequestHandler):
    state: FixtureState
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str, length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        st = self.state
        if not self.path.endswith("/status"):
            self._send(404, b"not found", "text/plain")
            return
        with st.lock:
            st.counts["status"] += 1
            st.no_slot = st.busy_status_calls > 0
            if st.no_slot:
                st.busy_status_calls -= 1
        self._send(200, (STATUS_BUSY if st.no_slot else st.status_text).encode(), "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        st = self.state
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        query = form.get("data", [""])[0]
        with st.lock:
            st.counts["interpreter"] += 1
            st.queries.append(query)
            if st.no_slot:
                st.violations += 1
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
            over = st.in_flight > st.slots
        try:
            if not over and st.latency_s:
                time.sleep(st.latency_s)
            self._answer(query, "429" if over else st.next_fault())
        finally:
            with st.lock:
                st.in_flight -= 1

    def _answer(self, query: str, fault: str) -> None:
        st = self.state
        with st.lock:
            st.counts[fault] += 1
        if fault == "429":
            self._send(429, b"<html><title>Too Many Requests</title></html>", "text/html")
        elif fault == "504":
            self._send(504, b"<html><title>504 Gateway Timeout</title></html>", "text/html")
        elif fault == "html":
            self._send(200, b"<html><head><title>Overpass is down for maintenance</title></head></html>", "text/html")
        elif fault == "hang":
            time.sleep(st.hang_s)
            self._send(200, json.dumps(st.data.answer(query)).encode(), "application/json")
        elif fault == "remark":
            body = {"version": 0.6, "elements": [], "remark": 'runtime error: Query timed out in "query" at line 3.'}
            self._send(200, json.dumps(body).encode(), "application/json")
        elif fault == "truncated":
            full = json.dumps(st.data.answer(query)).encode()
            self._send(200, full[: len(full) // 2], "application/json", length=len(full))
        else:
            self._send(200, json.dumps(st.data.answer(query)).encode(), "application/json")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that timed out on a hung request close the socket: expected, not noise.
        pass


class OverpassFixture:
    """``with OverpassFixture(elements) as fx: fx.endpoint`` → ``http://127.0.0.1:PORT/api``."""

    def __init__(self, elements: Iterable[dict[str, Any]], status_text: str = STATUS_OK, slots: int = 3) -> None:
        self.state = FixtureState(MiniOverpass(elements), status_text, slots)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/api"

    def __enter__(self) -> OverpassFixture:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
