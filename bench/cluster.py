"""Wharf as a cluster: the read paths on SQLite and on PostgreSQL, with one replica and with
two behind nginx; and how fast a hold reaches three replicas — the moment every replica
refuses a write, and the moment read-only is in effect cluster-wide — idle and under a pull
load; and the catalog and tag-list pages as the registry grows to 100,000 repositories and
1,000,000 tags on each backend, and a garbage collection against the blobs it deletes. Writes
bench/results/cluster.json, docs/cluster.md and docs/cluster.png.

    cluster.py --wharf-bin PATH [--rounds N] [--seconds S] [--smoke]

bench/run-cluster builds Wharf and runs it (Debian's python3, which has matplotlib; a
PostgreSQL from scripts/postgres, nginx from Debian). Not part of bench/run: it needs its own
PostgreSQL, and its figures are of the cluster, not against the peer.

How a hold's arrival is seen: one prober per replica sends `DELETE /v2/probe/manifests/<a
digest no manifest has>` over a keep-alive connection, one after another (a millisecond
apart). A writable replica answers 404 (the deletion is admitted, finds nothing); a draining or
read-only one 405 (DENIED). A deletion is no push, so the probes never hold the drain open
(uploads would: each would count as a push under way). "Refused everywhere" is the first 405
of the slowest replica, measured from the moment the hold's PUT was sent to one replica;
"in effect" is that PUT's answer with `?wait=`, which comes when every live replica is
read-only with the latest holds applied.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402
import registry_client as rc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROBE = "/v2/probe/manifests/sha256:" + "0" * 64


class Postgres:
    """A throwaway PostgreSQL from scripts/postgres, one database per registry."""

    def __init__(self):
        out = subprocess.run([str(ROOT / "scripts/postgres"), "start"], check=True,
                             capture_output=True, text=True).stdout
        values = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
        self.url, self.dir = values["WHARF_TEST_POSTGRES_URL"], values["WHARF_TEST_POSTGRES_DIR"]
        self.count = 0

    def database(self) -> str:
        """A fresh database's URL."""
        self.count += 1
        name = f"cluster{self.count}"
        subprocess.run([psql(), self.url, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        subprocess.run([str(ROOT / "scripts/postgres"), "stop", self.dir], check=False)


def psql() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    return str(found[-1]) if found else "psql"


def start_wharf(binary: str, work: Path, name: str, data: Path, metadata_url: str | None) -> h.Server:
    """One Wharf (one replica) on `data`, with its metadata in PostgreSQL when given."""
    port = h.free_port()
    config = work / f"{name}.yaml"
    text = ("server:\n"
            f"  listen: 127.0.0.1:{port}\n"
            "storage:\n"
            f"  data_dir: {data}\n"
            "  fsync: false\n"
            "log:\n"
            "  level: warn\n")
    if metadata_url:
        text += f"metadata:\n  url: {metadata_url}\n"
    config.write_text(text)
    log_path = work / f"{name}.log"
    with open(log_path, "ab") as out:
        proc = h.spawn([binary, "serve", "--config", str(config)], stdout=out, stderr=out,
                       stdin=subprocess.DEVNULL, env=h.wharf_env())
    url = f"http://127.0.0.1:{port}"
    h.wait_ready(proc, url + "/readyz", name, log_path=log_path)
    # The data folder is shared by replicas: Server.stop would delete it under the others.
    return h.Server(proc, url, work / f"nothing-{name}", log_path, config)


def start_balancer(work: Path, upstreams: list[str]) -> tuple[subprocess.Popen, str]:
    """nginx round robin over `upstreams` (URLs), keep-alive to them, as docs/scale-out.md
    configures it."""
    port = h.free_port()
    d = work / "nginx"
    d.mkdir(exist_ok=True)
    servers = "".join(f"    server {u.removeprefix('http://')} max_fails=0;\n" for u in upstreams)
    (d / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n"
        f"error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n"
        f"  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n"
        f"  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n"
        f"  scgi_temp_path {d}/scgi;\n"
        f"  upstream wharf {{\n{servers}    keepalive 64;\n  }}\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 0;\n"
        "    proxy_request_buffering off;\n    proxy_buffering off;\n"
        "    location / {\n      proxy_pass http://wharf;\n      proxy_http_version 1.1;\n"
        "      proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n"
        "    }\n  }\n}\n")
    proc = h.spawn(["/usr/sbin/nginx", "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    h.wait_ready(proc, url + "/healthz", "nginx")
    return proc, url


class Front:
    """What h.small_requests needs of a server: its URL."""

    def __init__(self, url: str):
        self.url = url


def reads(binary: str, work: Path, postgres: Postgres, plan: h.Plan) -> dict:
    """Manifest GET, blob HEAD and tags list on SQLite, on PostgreSQL, and on PostgreSQL with
    two replicas behind nginx."""
    m = {}
    for kind in ["sqlite", "postgres", "postgres_2_nginx"]:
        data = work / f"data-reads-{kind}"
        data.mkdir()
        url = None if kind == "sqlite" else postgres.database()
        count = 2 if kind.endswith("nginx") else 1
        servers = [start_wharf(binary, work, f"reads-{kind}-{i}", data, url) for i in range(count)]
        balancer = None
        try:
            front = Front(servers[0].url)
            if count > 1:
                balancer, front_url = start_balancer(work, [s.url for s in servers])
                front = Front(front_url)
            h.log(f"reads: {kind}")
            m.update({f"{kind}_{k}": v for k, v in h.small_requests(front, plan, 1).items()})
        finally:
            if balancer:
                h.stop(balancer)
            for server in servers:
                server.stop()
            shutil.rmtree(data, ignore_errors=True)
    return m


class Prober(threading.Thread):
    """Sends probe deletions to one replica until stopped; records when each answer came and
    what it was."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.answers: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.conn.request("DELETE", PROBE)
            resp = self.conn.getresponse()
            resp.read()
            with self.lock:
                self.answers.append((time.perf_counter(), resp.status))
            time.sleep(0.001)

    def first(self, status: int, after: float) -> float | None:
        """When the first answer `status` came at or after `after`."""
        with self.lock:
            return next((t for t, s in self.answers if t >= after and s == status), None)

    def forget(self) -> None:
        with self.lock:
            self.answers.clear()


def holds(binary: str, work: Path, postgres: Postgres, rounds: int, seconds: int,
          plan: h.Plan) -> dict:
    """Three replicas on one PostgreSQL database and data folder: `rounds` holds taken through
    the first, each released once in effect, idle and then under a pull load through nginx."""
    data = work / "data-holds"
    data.mkdir()
    url = postgres.database()
    servers = [start_wharf(binary, work, f"holds-{i}", data, url) for i in range(3)]
    balancer, front = start_balancer(work, [s.url for s in servers])
    probers = [Prober(s.url) for s in servers]
    m: dict = {}
    try:
        with rc.Client(front) as client:
            rc.small_image(client, "bench/pull", ["v0"])
        for prober in probers:
            prober.start()
        for load in ["idle", "pull"]:
            wrk = None
            if load == "pull":
                wrk = h.wrk(f"{front}/v2/bench/pull/manifests/v0", seconds, plan.connections,
                            "GET", h.MANIFEST_ACCEPT)
                time.sleep(0.5)
            refused, in_effect, released = [], [], []
            with rc.Client(servers[0].url) as admin:
                for i in range(rounds):
                    for prober in probers:
                        prober.forget()
                    sent = time.perf_counter()
                    resp = admin.expect(200, "PUT", "/api/v1/state/holds/bench?wait=10s",
                                        body=json.dumps({"reason": "bench"}).encode(),
                                        headers={"Content-Type": "application/json"})
                    in_effect.append((time.perf_counter() - sent) * 1000)
                    if not json.loads(resp.body)["state"]["read_only_in_effect"]:
                        raise RuntimeError(f"round {i}: not in effect within 10 s")
                    firsts = [p.first(405, sent) for p in probers]
                    if None in firsts:
                        # In effect, yet a probe has not seen a refusal: wait for its next one.
                        time.sleep(0.05)
                        firsts = [p.first(405, sent) for p in probers]
                    refused.append((max(firsts) - sent) * 1000)
                    released_at = time.perf_counter()
                    admin.expect(200, "DELETE", "/api/v1/state/holds/bench")
                    # Writable everywhere again before the next round.
                    deadline = time.monotonic() + 10
                    while any(p.first(404, released_at) is None for p in probers):
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"round {i}: not writable again within 10 s")
                        time.sleep(0.002)
                    released.append((max(p.first(404, released_at) for p in probers)
                                     - released_at) * 1000)
            if wrk:
                result = h.wrk_result(wrk)
                m["pull_errors"], m["pull_rps"] = result["errors"], result["rps"]
                m["pull_p99_ms"] = result["p99_ms"]
            for name, values in [("refused", refused), ("in_effect", in_effect),
                                 ("writable", released)]:
                values.sort()
                m[f"{load}_{name}_p50_ms"] = statistics.median(values)
                m[f"{load}_{name}_p99_ms"] = values[min(len(values) - 1,
                                                        int(len(values) * 0.99))]
                m[f"{load}_{name}_max_ms"] = values[-1]
            h.log(f"holds, {load}: refused everywhere p50 {m[f'{load}_refused_p50_ms']:.1f} ms, "
                  f"p99 {m[f'{load}_refused_p99_ms']:.1f} ms; in effect p50 "
                  f"{m[f'{load}_in_effect_p50_ms']:.1f} ms")
    finally:
        for prober in probers:
            prober.running = False
        for prober in probers:
            prober.join(timeout=5)
        h.stop(balancer)
        for server in servers:
            server.stop()
        shutil.rmtree(data, ignore_errors=True)
    m["rounds"] = rounds
    return m


# A manifest's digest and bytes for the growth rows (`{}`: any bytes do, nothing pulls them).
GROW_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
GROW_STEPS = (10_000, 50_000, 100_000)
GROW_TAGS = 10


def grow_sql(start: int, end: int, content: str) -> list[str]:
    """SQL (both backends) adding repositories `grow/r<start+1…end>`, each with one manifest and
    GROW_TAGS tags, as pushes would leave them (the triggers keep `repository_stats`)."""
    return [
        f"WITH RECURSIVE n(i) AS (SELECT {start + 1} UNION ALL SELECT i + 1 FROM n WHERE i < {end}) "
        f"INSERT INTO repositories (name, created_at) SELECT 'grow/r' || (1000000 + i), i FROM n",
        "INSERT INTO manifests (repository_id, digest, media_type, size, content, created_at) "
        f"SELECT id, '{GROW_DIGEST}', '{rc.OCI_MANIFEST}', 2, {content}, 1 FROM repositories "
        f"WHERE name >= 'grow/r{1000000 + start + 1}' AND name <= 'grow/r{1000000 + end}'",
        f"WITH RECURSIVE k(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM k WHERE j < {GROW_TAGS}) "
        "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) "
        f"SELECT r.id, 't' || k.j, '{GROW_DIGEST}', 1 FROM repositories r, k "
        f"WHERE r.name >= 'grow/r{1000000 + start + 1}' AND r.name <= 'grow/r{1000000 + end}'",
    ]


def growth(binary: str, work: Path, postgres: Postgres, plan: h.Plan, seconds: int) -> dict:
    """Catalog and tag-list pages as the registry grows to 100,000 repositories and 1,000,000
    tags, on each backend: the same pages at each size, which should cost the same."""
    m: dict = {}
    for backend in ["sqlite", "postgres"]:
        data = work / f"data-growth-{backend}"
        data.mkdir()
        url = postgres.database() if backend == "postgres" else None
        server = start_wharf(binary, work, f"growth-{backend}", data, url)
        try:
            def run(statements: list[str]) -> None:
                if url:
                    for statement in statements:
                        subprocess.run([psql(), url, "-q", "-c", statement], check=True)
                else:
                    with sqlite3.connect(data / "metadata.db", timeout=60) as db:
                        for statement in statements:
                            db.execute(statement)
            content = "'\\x7b7d'::bytea" if url else "X'7b7d'"
            done = 0
            for step in GROW_STEPS:
                h.log(f"growth, {backend}: {step:,} repositories, {step * GROW_TAGS:,} tags")
                run(grow_sql(done, step, content))
                done = step
                middle = f"grow/r{1000000 + step // 2}"
                loads = {
                    "catalog_first": "/v2/_catalog?n=100",
                    "catalog_middle": f"/v2/_catalog?n=100&last={middle}",
                    "tags_list": f"/v2/{middle}/tags/list",
                }
                for name, path in loads.items():
                    r = h.run_wrk(server.url + path, seconds, plan.connections)
                    if r["errors"]:
                        raise RuntimeError(f"{backend} {path}: {r['errors']} failed requests")
                    m[f"{backend}_{step}_{name}_rps"] = r["rps"]
                    m[f"{backend}_{step}_{name}_p99_ms"] = r["p99_ms"]
        finally:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)
    return m


GC_STEPS = (2_000, 8_000, 32_000)


def gc_growth(binary: str, work: Path, postgres: Postgres, smoke: bool) -> dict:
    """One garbage-collection pass (`POST /api/v1/gc` with no grace) over a registry holding N
    blobs no manifest uses, which it deletes: on each backend, N growing fourfold, a fresh
    registry each time. A pass should grow linearly with the blobs."""
    m: dict = {}
    steps = (100, 400) if smoke else GC_STEPS
    for backend in ["sqlite", "postgres"]:
        for step in steps:
            data = work / f"data-gc-{backend}-{step}"
            data.mkdir()
            url = postgres.database() if backend == "postgres" else None
            server = start_wharf(binary, work, f"gc-{backend}-{step}", data, url)
            try:
                def push(share: range) -> None:
                    with rc.Client(server.url) as client:
                        for i in share:
                            client.push_bytes(f"gc/r{i % 100}", i.to_bytes(8, "big") * 128)
                with h.concurrent.futures.ThreadPoolExecutor(4) as pool:
                    for done in [pool.submit(push, range(k, step, 4)) for k in range(4)]:
                        done.result()
                with rc.Client(server.url) as client:
                    started = time.perf_counter()
                    resp = client.expect(200, "POST", "/api/v1/gc", body=b'{"grace": "0s"}',
                                         headers={"Content-Type": "application/json"})
                    took = time.perf_counter() - started
                deleted = json.loads(resp.body)["deleted_blobs"]
                if deleted != step:
                    raise RuntimeError(f"gc on {backend} deleted {deleted} of {step} blobs")
                m[f"{backend}_{step}_gc_s"] = took
                h.log(f"gc, {backend}: {step:,} blobs deleted in {took:.2f} s")
            finally:
                server.stop()
                shutil.rmtree(data, ignore_errors=True)
    m["steps"] = list(steps)
    return m


def report(d: dict, md: Path) -> None:
    if d.get("growth") and d.get("gc"):
        chart(d, md.with_suffix(".png"))
    r, s = d["reads"], d["holds"]
    f = h_fmt
    rows = []
    for what, key in [("Manifest GET by tag", "manifest_get"), ("Blob HEAD", "blob_head"),
                      ("Tags list", "tags_list")]:
        rows.append(f"| {what} | {f(r.get(f'sqlite_{key}_rps'))} | "
                    f"{f(r.get(f'postgres_{key}_rps'))} | {f(r.get(f'postgres_2_nginx_{key}_rps'))} | "
                    f"{f(r.get(f'sqlite_{key}_p99_ms'))} / {f(r.get(f'postgres_{key}_p99_ms'))} / "
                    f"{f(r.get(f'postgres_2_nginx_{key}_p99_ms'))} |")
    hold_rows = []
    for load, label in [("idle", "idle"), ("pull", f"under a pull load ({f(s.get('pull_rps'))} "
                                                   f"requests/s, {s.get('pull_errors')} failed)")]:
        hold_rows.append(
            f"| {label} | {f(s[f'{load}_refused_p50_ms'])} | {f(s[f'{load}_refused_p99_ms'])} | "
            f"{f(s[f'{load}_in_effect_p50_ms'])} | {f(s[f'{load}_in_effect_p99_ms'])} | "
            f"{f(s[f'{load}_writable_p50_ms'])} |")
    met = s["idle_refused_p99_ms"] < 100
    md.write_text(f"""# Wharf as a cluster

<!-- Generated by bench/run-cluster; do not edit by hand: run it again. -->

Measured by `bench/run-cluster` on {d['machine']} ({d['source']}, {d['when']}), not in CI:
PostgreSQL 15 from Debian on loopback (`scripts/postgres`: fsync off), nginx from Debian in
front, every process on the machine's cores. The figures are of the cluster, not against a
peer: Distribution leaves read-only to each replica's administrator.

## Read paths by backend

{d['plan']['connections']} connections, {d['plan']['small_seconds']} s each (wrk; ab for HEAD), as in
[the benchmarks](benchmarks.md). Requests/s, and p99 in ms (SQLite / PostgreSQL / two
replicas). On one machine the replicas share its two cores with nginx and PostgreSQL, so two
replicas measure the cost of the hop through the balancer, not the gain of a second machine.

| Request | SQLite | PostgreSQL | PostgreSQL, 2 replicas behind nginx | p99 ms |
|---|--:|--:|--:|--:|
{chr(10).join(rows)}

## A hold reaching three replicas

Three `wharf serve` on one PostgreSQL database and data folder; {s['rounds']} holds taken
through the first replica and released once in effect. *Refused everywhere*: from the hold's
`PUT` to the first refusal of the slowest replica (probes a millisecond apart, see
`bench/cluster.py`). *In effect*: the `PUT …?wait=` answer, once every live replica is
read-only with the latest holds. *Writable*: from the release to the first admitted write on
the slowest replica. Milliseconds.

| Load | Refused everywhere p50 | p99 | In effect p50 | p99 | Writable again p50 |
|---|--:|--:|--:|--:|--:|
{chr(10).join(hold_rows)}

Target: refused everywhere within 100 ms at p99, idle: **{'met' if met else 'not met'}**
({f(s['idle_refused_p99_ms'])} ms).
{growth_text(d)}""")


def chart(d: dict, png: Path) -> None:
    """The growth curves: each page's rate against the registry's size, and a garbage
    collection's time against the blobs it deletes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    g, c = d["growth"], d["gc"]
    fig, (pages, gc) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = [step / 1000 for step in GROW_STEPS]
    for backend, label, style in [("sqlite", "SQLite", "-"), ("postgres", "PostgreSQL", "--")]:
        for name, what, marker in [("catalog_first", "catalog, first page", "o"),
                                   ("catalog_middle", "catalog, middle page", "s"),
                                   ("tags_list", "10-tag list", "^")]:
            pages.plot(sizes, [g[f"{backend}_{step}_{name}_rps"] / 1000 for step in GROW_STEPS],
                       style, marker=marker, label=f"{label}: {what}")
        gc.plot([n / 1000 for n in c["steps"]], [c[f"{backend}_{n}_gc_s"] for n in c["steps"]],
                style, marker="o", label=label)
    pages.set(title="Pages as the registry grows", xlabel="thousands of repositories (10 tags each)",
              ylabel="thousands of requests/s (32 connections)")
    pages.set_ylim(0, pages.get_ylim()[1] * 1.35)
    pages.legend(fontsize=7, loc="upper center", ncol=2)
    gc.set(title="One garbage-collection pass", xlabel="thousands of blobs deleted",
           ylabel="seconds", ylim=(0, None), xlim=(0, None))
    gc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def growth_text(d: dict) -> str:
    g = d.get("growth")
    if not g:
        return ""
    f = h_fmt
    rows = []
    for backend, label in [("sqlite", "SQLite"), ("postgres", "PostgreSQL")]:
        for name, what in [("catalog_first", "catalog, first page of 100"),
                           ("catalog_middle", "catalog, a page of 100 from the middle"),
                           ("tags_list", "tags list of a repository (10 tags)")]:
            cells = " | ".join(f"{f(g.get(f'{backend}_{step}_{name}_rps'))} "
                               f"({f(g.get(f'{backend}_{step}_{name}_p99_ms'))} ms)"
                               for step in GROW_STEPS)
            rows.append(f"| {label}: {what} | {cells} |")
    header = " | ".join(f"{step:,} repositories, {step * GROW_TAGS:,} tags" for step in GROW_STEPS)
    return f"""
## Growth

The same pages as the registry grows, each backend on its own: repositories added (each with
one manifest and {GROW_TAGS} tags) straight into its database between the measures, as pushes
leave them (`repository_stats` kept by its triggers). Requests/s with 32 connections, p99 in
brackets. Pages continue after a key, never at an offset, so a page costs no more at the end
than at the start (a figure lower at the smallest size than later is the first measure after
the first bulk insert, not a cost of size).

![Pages as the registry grows, and garbage collection against the blobs](cluster.png)

| Page | {header} |
|---|{"--:|" * len(GROW_STEPS)}
{chr(10).join(rows)}
{gc_text(d)}"""


def gc_text(d: dict) -> str:
    g = d.get("gc")
    if not g:
        return ""
    steps = g["steps"]
    rows = []
    for backend, label in [("sqlite", "SQLite"), ("postgres", "PostgreSQL")]:
        times = [g.get(f"{backend}_{step}_gc_s") for step in steps]
        per = " | ".join(f"{t:.2f} s ({t / step * 1e6:.0f} µs a blob)" for t, step in zip(times, steps))
        rows.append(f"| {label} | {per} |")
    header = " | ".join(f"{step:,} blobs" for step in steps)
    return f"""
Garbage collection: one pass (`POST /api/v1/gc`, no grace) over a fresh registry holding N
blobs of 1 KiB that no manifest uses, all of which it deletes. A pass grows linearly with the
blobs when the time a blob stays the same.

| Backend | {header} |
|---|{"--:|" * len(steps)}
{chr(10).join(rows)}
"""


def h_fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, (int,)) or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--wharf-bin", required=True)
    ap.add_argument("--source", default="")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=0,
                    help="the pull load's length (default: long enough for the rounds)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "cluster.md")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "cluster.json")
    ap.add_argument("--report-only", type=Path, metavar="JSON",
                    help="only write the page again from saved results")
    args = ap.parse_args()
    if args.report_only:
        report(json.loads(args.report_only.read_text()), args.out)
        return 0
    plan = h.SMOKE if args.smoke else h.FULL
    rounds = 5 if args.smoke else args.rounds
    seconds = args.seconds or (5 if args.smoke else max(20, rounds // 2))
    work = Path(tempfile.mkdtemp(prefix="wharf-cluster-", dir="/var/tmp"))
    postgres = Postgres()
    try:
        d = {"machine": f"{os.cpu_count()} cores", "source": args.source,
             "when": time.strftime("%Y-%m-%d"), "plan": {"connections": plan.connections,
                                                        "small_seconds": plan.small_seconds},
             "reads": reads(args.wharf_bin, work, postgres, plan),
             "holds": holds(args.wharf_bin, work, postgres, rounds, seconds, plan),
             "growth": growth(args.wharf_bin, work, postgres, plan, 1 if args.smoke else 5),
             "gc": gc_growth(args.wharf_bin, work, postgres, args.smoke)}
    finally:
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(d, indent=1) + "\n")
    report(d, args.out)
    h.log(f"wrote {args.out} and {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
