"""The engine of bench/run: Wharf against CNCF Distribution ("the peer") on one machine.

bench/run installs the tools and builds Wharf, then runs this with Debian's python3 (for
matplotlib). Each run starts every server afresh on a free loopback port with an empty data
directory, runs the whole workload against it and stops it; runs alternate which registry goes
first, so that drift (page cache, thermal, noisy neighbours) touches both. The report takes the
median of the runs for each figure.

Usage (see bench/run --help):
    harness.py --wharf-bin PATH --bare-bin PATH [--runs N] [--smoke] [--out DIR] [--results JSON]
    harness.py --report-only bench/results/benchmarks.json   (rewrite docs/benchmarks.md + .png)
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import dataclasses
import datetime
import hashlib
import io
import json
import mmap
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import registry_client as rc
import report
from report import BARE_LAYOUTS, size_key, size_label

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WRK_SCRIPT = BENCH / "wrk" / "report.lua"
PULL_LOAD = BENCH / "pull_load.py"
PEER_BIN = "/usr/bin/docker-registry"

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and durations of one benchmark; FULL is the real one, SMOKE proves the harness."""

    runs: int
    mono_sizes: tuple[int, ...]      # monolithic pushes: POST, then one PUT with the content
    chunked_sizes: tuple[int, ...]   # chunked pushes: POST, PATCH per `chunk`, PUT ?digest=
    chunk: int
    pull_size: int                   # the blob the pull loads fetch (pushed monolithically)
    pull_seconds: int                # each pull load
    small_seconds: int               # each small-request load
    connections: int                 # concurrent connections/streams of the loads
    tags: int                        # tags of the image the small requests read
    big_tags: int                    # tags of the repository the large tags lists read
    catalog_repos: int               # repositories the catalog pages are read from
    referrers: int                   # referrers of the manifest the referrers list reads
    skopeo_layers: int
    skopeo_bytes: int                # total size of the skopeo image's layers
    toggles: int                     # read-only toggles under pull load
    toggle_seconds: int              # length of the pull load they run in (and its baseline)
    idle_holds: int                  # holds timed with nothing in flight (median taken)
    drain_uploads: int               # uploads in flight when the drain hold is taken
    drain_upload_size: int
    drain_rate: int                  # bytes/s each of those uploads is limited to
    fsync_variant: bool              # also time the pushes with Wharf's default fsync: true
    s3_sizes: tuple[int, ...]        # blobs pushed (monolithic and chunked) and pulled on S3
    moto_sizes: tuple[int, ...]      # the same on moto, where Distribution's S3 driver runs


FULL = Plan(runs=5, mono_sizes=(256 * MiB, GiB), chunked_sizes=(256 * MiB, GiB), chunk=8 * MiB,
            pull_size=256 * MiB, pull_seconds=10, small_seconds=10, connections=32, tags=50,
            big_tags=1000, catalog_repos=10_000, referrers=20, skopeo_layers=20, skopeo_bytes=200 * MiB, toggles=100, toggle_seconds=12,
            idle_holds=10, drain_uploads=16, drain_upload_size=64 * MiB, drain_rate=16 * MiB,
            fsync_variant=True, s3_sizes=(256 * MiB, GiB), moto_sizes=(256 * MiB,))
SMOKE = Plan(runs=1, mono_sizes=(4 * MiB, 8 * MiB), chunked_sizes=(8 * MiB,), chunk=MiB,
             pull_size=4 * MiB, pull_seconds=1, small_seconds=1, connections=32, tags=3,
             big_tags=30, catalog_repos=30, referrers=3, skopeo_layers=3, skopeo_bytes=3 * MiB, toggles=5, toggle_seconds=2, idle_holds=2,
             drain_uploads=2, drain_upload_size=2 * MiB, drain_rate=2 * MiB, fsync_variant=True,
             s3_sizes=(12 * MiB,), moto_sizes=(12 * MiB,))

MANIFEST_ACCEPT = rc.OCI_MANIFEST


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------------------------
# Everything the harness starts is recorded here and stopped by its PID on any exit (normal,
# exception, SIGINT, SIGTERM); nothing is ever killed by name.

_started: list[subprocess.Popen] = []


def spawn(cmd: list[str], **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, **kwargs)
    _started.append(proc)
    return proc


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _started:
        _started.remove(proc)


def _stop_all() -> None:
    for proc in list(_started):
        stop(proc, grace=5.0)


def _on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def wait_ready(proc: subprocess.Popen, url: str, name: str, timeout: float = 30.0,
               log_path: Path | None = None, any_answer: bool = False) -> None:
    """Waits until `url` answers 200 (with `any_answer`, anything at all)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log_path.read_text(errors="replace")[-2000:] if log_path else ""
            raise RuntimeError(f"{name} exited with {proc.returncode} while starting: {said}")
        status = http_status(url)
        if status == 200 or (any_answer and status):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer {url} within {timeout}s")


# --- memory ------------------------------------------------------------------------------------

def reset_peak(pid: int) -> None:
    """Resets the process's peak resident set size (VmHWM) to its current size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_mib(pid: int) -> float:
    return proc_status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    return proc_status_kib(pid, "VmRSS") / 1024


# --- servers -----------------------------------------------------------------------------------

class Server:
    """A registry under test: its process, URL and data directory."""

    kind = ""

    def __init__(self, proc: subprocess.Popen, url: str, data: Path, log_path: Path,
                 config: Path | None = None):
        self.proc, self.url, self.data, self.log_path = proc, url, data, log_path
        self.config = config  # Wharf's, for its maintenance commands

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.data, ignore_errors=True)


def wharf_env() -> dict[str, str]:
    """The environment without WHARF_* variables: Wharf reads those as configuration and
    refuses names it does not know, such as the harness's own WHARF_BIN."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}


def start_wharf(binary: str, work: Path, name: str, fsync: bool) -> Server:
    port = free_port()
    data = work / f"data-{name}"
    config = work / f"{name}.yaml"
    # Equivalent settings to the peer: filesystem storage under the same disk, no auth (Wharf
    # has none), warn-level logs without access logs. fsync follows the peer (which never
    # fsyncs) unless this is the fsync variant. The drain settings stay at their defaults.
    config.write_text(
        "server:\n"
        f"  listen: 127.0.0.1:{port}\n"
        "storage:\n"
        f"  data_dir: {data}\n"
        f"  fsync: {'true' if fsync else 'false'}\n"
        "log:\n"
        "  level: warn\n")
    log_path = work / f"{name}.log"
    with open(log_path, "ab") as out:
        proc = spawn([binary, "serve", "--config", str(config)], stdout=out, stderr=out,
                     stdin=subprocess.DEVNULL, env=wharf_env())
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url + "/healthz", name, log_path=log_path)
    return Server(proc, url, data, log_path, config)


def start_peer(work: Path, name: str) -> Server:
    port = free_port()
    data = work / f"data-{name}"
    config = work / f"{name}.yml"
    # Distribution's own defaults otherwise, including its in-memory blob descriptor cache
    # (Debian ships it enabled; it is what a Distribution operator runs). Access logs are off
    # because Wharf at warn level writes none either. No auth section: no auth.
    config.write_text(
        "version: 0.1\n"
        "log:\n"
        "  level: warn\n"
        "  accesslog:\n"
        "    disabled: true\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {data}\n"
        "  delete:\n"
        "    enabled: true\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n")
    log_path = work / f"{name}.log"
    with open(log_path, "ab") as out:
        proc = spawn([PEER_BIN, "serve", str(config)], stdout=out, stderr=out,
                     stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url + "/v2/", name, log_path=log_path)
    return Server(proc, url, data, log_path)


def start_bare(binary: str, work: Path, name: str, layout: int) -> Server:
    """bench/bare-upload: the least work a push takes (receive, write, hash), in one of its two
    thread layouts; the machine's limit for pushes, with the same client and requests."""
    port = free_port()
    data = work / f"data-{name}"
    log_path = work / f"{name}.log"
    with open(log_path, "ab") as out:
        proc = spawn([binary, "--layout", str(layout), f"127.0.0.1:{port}", str(data)],
                     stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url + "/healthz", name, log_path=log_path)
    return Server(proc, url, data, log_path)


def start_nginx(work: Path, root: Path, probe: str) -> tuple[subprocess.Popen, str]:
    """nginx serving the blob files from disk, under /sendfile/ and /readwrite/: the
    machine's limit for a pull."""
    port = free_port()
    prefix = work / "nginx"
    prefix.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the work dir (0700)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"{user}"
        "daemon off;\n"
        "worker_processes auto;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "  access_log off;\n"
        "  tcp_nopush on;\n"
        "  keepalive_requests 1000000;\n"
        "  default_type application/octet-stream;\n"
        f"  client_body_temp_path {prefix}/body;\n"
        f"  proxy_temp_path {prefix}/proxy;\n"
        f"  fastcgi_temp_path {prefix}/fastcgi;\n"
        f"  uwsgi_temp_path {prefix}/uwsgi;\n"
        f"  scgi_temp_path {prefix}/scgi;\n"
        f"  server {{\n"
        f"    listen 127.0.0.1:{port};\n"
        # The reference the targets name: sendfile(2) from the page cache.
        f"    location /sendfile/ {{ alias {root}/; sendfile on; }}\n"
        # Plain read(2)/write(2) through 1 MiB buffers, which can be faster (it is on some
        # virtual machines): so the page also says what the machine does at best.
        f"    location /readwrite/ {{ alias {root}/; sendfile off; output_buffers 2 1m; }}\n"
        "  }\n"
        "}\n")
    out = open(prefix / "stderr.log", "ab")
    proc = spawn(["nginx", "-p", str(prefix), "-c", str(conf)], stdout=out, stderr=out,
                 stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, f"{url}/sendfile/{probe}", "nginx")
    return proc, url


# --- wrk ---------------------------------------------------------------------------------------

def wrk(url: str, seconds: int, connections: int, method: str = "GET", accept: str = "",
        timeout: int = 60) -> subprocess.Popen:
    """Starts a wrk load; finish it with wrk_result. One wrk thread: the machine has two cores
    and the client should not take both from the server."""
    env = dict(os.environ, WRK_METHOD=method, WRK_ACCEPT=accept)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout}s",
           "-s", str(WRK_SCRIPT), url]
    return spawn(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 stdin=subprocess.DEVNULL)


def wrk_result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    _started.remove(proc)
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            r = json.loads(line[len("WRK_JSON "):])
            secs = r["duration_us"] / 1e6
            errors = sum(r["errors"].values())
            return {"rps": r["requests"] / secs, "mib_s": r["bytes"] / secs / MiB,
                    "p50_ms": r["latency_us"]["p50"] / 1000,
                    "p99_ms": r["latency_us"]["p99"] / 1000,
                    "requests": r["requests"], "errors": errors, "raw": r}
    raise RuntimeError(f"wrk gave no summary: {out[-500:]} {err[-500:]}")


def run_wrk(*args, **kwargs) -> dict:
    return wrk_result(wrk(*args, **kwargs))


def run_ab_head(url: str, seconds: int, connections: int, accept: str = "") -> dict:
    """A HEAD load with ApacheBench (keep-alive): wrk 4.1 cannot do HEAD, its parser waits
    for the body the Content-Length announces (wg/wrk#198)."""
    cmd = ["ab", "-q", "-i", "-k", "-c", str(connections), "-t", str(seconds),
           "-n", "100000000"] + (["-H", f"Accept: {accept}"] if accept else []) + [url]
    proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 stdin=subprocess.DEVNULL)
    out, err = proc.communicate()
    _started.remove(proc)

    def field(pattern: str, default: str | None = None) -> float:
        found = re.search(pattern, out, re.MULTILINE)
        if not found:
            if default is None:
                raise RuntimeError(f"ab output lacks {pattern!r}: {out[-500:]} {err[-500:]}")
            return float(default)
        return float(found.group(1))

    return {"rps": field(r"^Requests per second:\s+([\d.]+)"),
            "p99_ms": field(r"^\s+99%\s+(\d+)"),
            "errors": field(r"^Failed requests:\s+(\d+)") + field(r"^Non-2xx responses:\s+(\d+)", "0")}


# --- inputs ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Blob:
    path: Path
    size: int
    digest: str


def random_file(path: Path, size: int) -> Blob:
    """A file of `size` random bytes (incompressible, never seen by either registry before)."""
    h = hashlib.sha256()
    with open("/dev/urandom", "rb") as src, open(path, "wb") as dst:
        left = size
        while left:
            block = src.read(min(left, 4 * MiB))
            h.update(block)
            dst.write(block)
            left -= len(block)
    return Blob(path, size, "sha256:" + h.hexdigest())


def skopeo_image(path: Path, layers: int, total: int) -> int:
    """A `dir:` image like a real one: `layers` uncompressed tar layers of decreasing size
    (each 3/4 of the one before, `total` bytes altogether), a config whose rootfs.diff_ids name
    them, and an OCI manifest. Answers the size of its blobs."""
    path.mkdir(parents=True)
    weights = [0.75 ** i for i in range(layers)]
    sizes = [max(1024, int(total * w / sum(weights))) for w in weights]
    descriptors, diff_ids = [], []
    for i, size in enumerate(sizes):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"layer{i}/data.bin")
            info.size, info.mtime, info.mode = size, 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(os.urandom(size)))
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        (path / digest).write_bytes(data)
        descriptors.append({"mediaType": rc.OCI_LAYER, "digest": f"sha256:{digest}",
                            "size": len(data)})
        diff_ids.append(f"sha256:{digest}")
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_digest = hashlib.sha256(config).hexdigest()
    (path / config_digest).write_bytes(config)
    manifest = {"schemaVersion": 2, "mediaType": rc.OCI_MANIFEST,
                "config": {"mediaType": rc.OCI_CONFIG, "digest": f"sha256:{config_digest}",
                           "size": len(config)},
                "layers": descriptors}
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    return sum(d["size"] for d in descriptors) + len(config)


def skopeo(args: list[str], scratch: Path) -> float:
    """Runs skopeo with a blob-info cache of its own, so that no run learns from another
    (skopeo would otherwise try cross-repository mounts of blobs it saw pushed before).
    Answers the wall time in seconds."""
    scratch.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(scratch), HOME=str(scratch),
               XDG_DATA_HOME=str(scratch / "share"), XDG_CONFIG_HOME=str(scratch / "config"))
    cmd = ["skopeo", "--insecure-policy", *args]
    if os.geteuid() == 0:
        # As root, skopeo keeps its cache in /var/lib/containers/cache whatever HOME says:
        # give this one process a private, empty tmpfs there.
        Path("/var/lib/containers").mkdir(parents=True, exist_ok=True)
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
               'mount -t tmpfs -o size=64m bench-skopeo /var/lib/containers && exec "$@"',
               "sh", *cmd]
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


# --- workloads ---------------------------------------------------------------------------------

class Inputs:
    """What every run pushes and pulls, made once per invocation in the work directory."""

    def __init__(self, plan: Plan, work: Path):
        self.dir = work / "inputs"
        self.dir.mkdir()
        log("generating blobs from /dev/urandom")
        # A separate blob per push, so no push finds its content already stored in a run.
        self.mono = {s: random_file(self.dir / f"mono-{size_key(s)}", s) for s in plan.mono_sizes}
        self.chunked = {s: random_file(self.dir / f"chunked-{size_key(s)}", s)
                        for s in plan.chunked_sizes}
        self.pull = self.mono[plan.pull_size]
        self.drain = random_file(self.dir / "drain", plan.drain_upload_size)
        log("building the skopeo image")
        self.image = self.dir / "image"
        self.image_bytes = skopeo_image(self.image, plan.skopeo_layers, plan.skopeo_bytes)
        # The largest input, for openssl.
        self.largest = max([*self.mono.values(), *self.chunked.values()], key=lambda b: b.size)
        settle()


def warm(path: Path) -> None:
    """Reads `path` (every file under it, if a folder) once, so that the timed step after it
    reads from the page cache. Done right before each step, not once: kernels that reclaim
    idle page cache proactively (DAMON, as on the machine the published figures come from)
    page out what has not been read for a minute, and a step that reads half its input from
    disk measures the disk."""
    for file in path.rglob("*") if path.is_dir() else [path]:
        if file.is_file():
            with open(file, "rb") as f:
                while f.read(8 * MiB):
                    pass


def settle() -> None:
    """Writes every dirty page to disk. A push leaves up to its size dirty in the page cache;
    left there, its writeback would run during the next phases (or the other registry's run),
    and a large enough backlog makes the kernel throttle whoever writes next. Each push starts
    from a clean page cache instead."""
    os.sync()


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def pushes(server: Server, plan: Plan, inputs: Inputs, run: int, memory: bool) -> dict:
    """Monolithic and chunked blob pushes, each to a fresh repository; MiB/s of the whole push
    (open, content, commit). With `memory`, the server's peak RSS during the largest
    monolithic push."""
    m = {}
    with rc.Client(server.url) as client:
        for size, blob in inputs.mono.items():
            settle()
            warm(blob.path)
            if memory and size == max(plan.mono_sizes):
                reset_peak(server.pid)
            secs = timed(client.push_monolithic, f"bench/mono-{size_key(size)}-r{run}",
                         str(blob.path), blob.digest)
            m[f"push_mono_{size_key(size)}"] = size / MiB / secs
            if memory and size == max(plan.mono_sizes):
                m["mem_push"] = peak_mib(server.pid)
        for size, blob in inputs.chunked.items():
            settle()
            warm(blob.path)
            secs = timed(client.push_chunked, f"bench/chunked-{size_key(size)}-r{run}",
                         str(blob.path), blob.digest, plan.chunk)
            m[f"push_chunked_{size_key(size)}"] = size / MiB / secs
    return m


def run_pull_load(url: str, seconds: int, connections: int) -> dict:
    """A blob pull load from bench/pull_load.py (not wrk: see that file); MiB/s of body read."""
    out = subprocess.run([sys.executable, str(PULL_LOAD), url, str(seconds), str(connections)],
                         capture_output=True, text=True, check=True,
                         timeout=seconds + 120).stdout
    r = json.loads(out)
    return {"mib_s": r["bytes"] / r["duration_s"] / MiB, "errors": r["errors"],
            "requests": r["requests"]}


def pulls(url: str, plan: Plan, path: str, pid: int | None) -> dict:
    """One stream, then `connections` concurrent streams pulling the same blob for a fixed
    time; MiB/s of body read. With a pid, that process's peak RSS during the concurrent pulls."""
    # One untimed pull first: it brings the server's copy of the blob into the page cache.
    with rc.Client(url) as client:
        client.read_through(path)
    one = run_pull_load(url + path, plan.pull_seconds, 1)
    if pid:
        reset_peak(pid)
    many = run_pull_load(url + path, plan.pull_seconds, plan.connections)
    m = {"pull_1": one["mib_s"], "pull_n": many["mib_s"],
         "pull_1_errors": one["errors"], "pull_n_errors": many["errors"]}
    if pid:
        m["mem_pull"] = peak_mib(pid)
    return m


def small_requests(server: Server, plan: Plan, run: int) -> dict:
    """Manifest GET by tag, blob HEAD and tags list, `connections` connections each."""
    repo = f"bench/small-r{run}"
    with rc.Client(server.url) as client:
        digests = rc.small_image(client, repo, [f"v{i}" for i in range(plan.tags)])
    m = {}
    loads = {
        "manifest_get": (f"/v2/{repo}/manifests/v0", "GET", MANIFEST_ACCEPT),
        "blob_head": (f"/v2/{repo}/blobs/{digests['layer']}", "HEAD", ""),
        "tags_list": (f"/v2/{repo}/tags/list", "GET", ""),
    }
    for name, (path, method, accept) in loads.items():
        if method == "HEAD":
            r = run_ab_head(server.url + path, plan.small_seconds, plan.connections)
        else:
            r = run_wrk(server.url + path, plan.small_seconds, plan.connections, method, accept)
        m[f"{name}_rps"], m[f"{name}_p99_ms"], m[f"{name}_errors"] = r["rps"], r["p99_ms"], r["errors"]
    return m


def populate_catalog(server: Server, source: str, names: list[str], digests: dict) -> None:
    """Makes each of `names` a repository holding `source`'s small image, over 8 connections
    (10,000 repositories are 30,000 requests)."""
    def populate(share: list[str]) -> None:
        with rc.Client(server.url) as client:
            for name in share:
                rc.mount_image(client, source, name, digests, digests["manifest_bytes"])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(populate, names[i::8]) for i in range(8)]:
            done.result()  # a failed push fails the run


def listings(server: Server, plan: Plan, run: int, referrers: bool) -> dict:
    """Listings and a manifest HEAD by digest, `connections` connections each: a page of every
    tag of a `big_tags` repository and a page of 100 from its middle, catalog pages over
    `catalog_repos` repositories (the first 1,000, and 100 from the middle), and with
    `referrers` (Wharf: the peer has no referrers API) the referrers of a manifest that has
    `plan.referrers`."""
    repo = f"bench/list-r{run}"
    tags = [f"t{i:05}" for i in range(plan.big_tags)]
    with rc.Client(server.url) as client:
        digests = rc.small_image(client, repo, tags)
        names = [f"bench/catalog-r{run}/{i:05}" for i in range(plan.catalog_repos)]
        populate_catalog(server, repo, names, digests)
        subject = {"mediaType": rc.OCI_MANIFEST, "digest": digests["manifest"],
                   "size": len(digests["manifest_bytes"])}
        if referrers:
            for i in range(plan.referrers):
                rc.referrer(client, repo, subject, i)
    middle_tag, middle_repo = tags[len(tags) // 2], names[len(names) // 2]
    loads = {
        "tags_list_big": (f"/v2/{repo}/tags/list", "GET"),
        "tags_page_100": (f"/v2/{repo}/tags/list?n=100&last={middle_tag}", "GET"),
        "catalog_page_1000": ("/v2/_catalog?n=1000", "GET"),
        "catalog_page_100": (f"/v2/_catalog?n=100&last={urllib.parse.quote(middle_repo, safe='')}",
                             "GET"),
        "manifest_head": (f"/v2/{repo}/manifests/{digests['manifest']}", "HEAD"),
    }
    if referrers:
        loads["referrers"] = (f"/v2/{repo}/referrers/{digests['manifest']}", "GET")
    m = {}
    for name, (path, method) in loads.items():
        if method == "HEAD":
            # Distribution answers a manifest HEAD without an Accept naming its type with 404.
            r = run_ab_head(server.url + path, plan.small_seconds, plan.connections,
                            MANIFEST_ACCEPT)
        else:
            r = run_wrk(server.url + path, plan.small_seconds, plan.connections, method, "")
        m[f"{name}_rps"], m[f"{name}_p99_ms"], m[f"{name}_errors"] = r["rps"], r["p99_ms"], r["errors"]
    return m


def skopeo_push_pull(server: Server, inputs: Inputs, work: Path, run: int) -> dict:
    host = server.url.removeprefix("http://")
    ref = f"docker://{host}/bench/skopeo-r{run}:v1"
    scratch = work / "skopeo"
    warm(inputs.image)
    push = skopeo(["copy", "--dest-tls-verify=false", f"dir:{inputs.image}", ref], scratch / "push")
    pulled = work / "skopeo-pulled"
    pull = skopeo(["copy", "--src-tls-verify=false", ref, f"dir:{pulled}"], scratch / "pull")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(pulled, ignore_errors=True)
    mib = inputs.image_bytes / MiB
    return {"skopeo_push_s": push, "skopeo_pull_s": pull,
            "skopeo_push_mib_s": mib / push, "skopeo_pull_mib_s": mib / pull}


HOLD_BODY = json.dumps({"reason": "bench", "ttl": "10m"}).encode()
JSON = {"Content-Type": "application/json"}


def take_hold(client: rc.Client, name: str, wait: str) -> float:
    """PUT a hold and wait for read-only to be in effect; answers the milliseconds it took."""
    started = time.perf_counter()
    resp = client.expect(200, "PUT", f"/api/v1/state/holds/{name}?wait={wait}", body=HOLD_BODY,
                         headers=JSON)
    took = (time.perf_counter() - started) * 1000
    effective = json.loads(resp.body)["state"]["effective"]
    if effective != "read-only":
        raise RuntimeError(f"hold answered 200 with the registry {effective}")
    return took


def release_hold(client: rc.Client, name: str) -> None:
    client.expect(200, "DELETE", f"/api/v1/state/holds/{name}")


def toggles(server: Server, plan: Plan, run: int) -> dict:
    """Pull load on a manifest (by tag) for toggle_seconds, first alone, then with `toggles`
    hold/release cycles spread evenly over it; errors and p99 of the pulls both ways."""
    repo = f"bench/small-r{run}"  # made by small_requests
    url = f"{server.url}/v2/{repo}/manifests/v0"
    base = run_wrk(url, plan.toggle_seconds, plan.connections, "GET", MANIFEST_ACCEPT)
    load = wrk(url, plan.toggle_seconds, plan.connections, "GET", MANIFEST_ACCEPT)
    # Leave the first and last ~0.5 s of the load without toggles (wrk connecting, ending).
    time.sleep(0.5)
    period = (plan.toggle_seconds - 1.0) / plan.toggles
    holds, failed = [], 0
    started = time.perf_counter()
    with rc.Client(server.url) as client:
        for i in range(plan.toggles):
            try:
                holds.append(take_hold(client, "bench", "10s"))
            except (rc.RegistryError, RuntimeError) as e:
                failed += 1  # not read-only within 10 s, or refused: counted, not fatal
                log(f"toggle {i}: {e}")
            release_hold(client, "bench")
            time.sleep(max(0.0, started + (i + 1) * period - time.perf_counter()))
    span = time.perf_counter() - started
    under = wrk_result(load)
    holds.sort()
    return {"toggle_base_p99_ms": base["p99_ms"], "toggle_base_errors": base["errors"],
            "toggle_base_rps": base["rps"],
            "toggle_p99_ms": under["p99_ms"], "toggle_errors": under["errors"],
            "toggle_rps": under["rps"], "toggle_count": len(holds), "toggle_failed": failed,
            "toggle_span_s": span,
            "toggle_hold_median_ms": statistics.median(holds) if holds else None,
            "toggle_hold_max_ms": holds[-1] if holds else None}


def drains(server: Server, plan: Plan, inputs: Inputs, run: int) -> dict:
    """Time from PUT hold (?wait) to read-only in effect: with nothing in flight (median of
    idle_holds), then with drain_uploads pushes in flight, as docker and podman push: a
    rate-limited layer, then the config blob (a new upload, opened during the drain), then the
    manifest by tag. Every push must succeed, and read-only should follow the last manifest
    within milliseconds (not a drain.push_grace later)."""
    m = {}
    with rc.Client(server.url) as client:
        # skopeo just pushed, and its push is complete (its manifest went by tag last): the
        # hold does not wait for it.
        idle = []
        for _ in range(plan.idle_holds):
            idle.append(take_hold(client, "bench", "60s"))
            release_hold(client, "bench")
        m["hold_idle_ms"] = statistics.median(idle)

        # Each push's layer: a session opened here, then curl PUTting the content at drain_rate.
        repos = [f"bench/drain-r{run}-{i}" for i in range(plan.drain_uploads)]
        uploads = []
        for repo in repos:
            location = client.open_upload(repo)
            uploads.append(urljoin(server.url, client.with_digest(location, inputs.drain.digest)))
        ends: list[float] = [0.0] * len(uploads)
        codes: list[str] = [""] * len(uploads)

        def push(i: int, target: str) -> None:
            # `Expect:` off: curl would otherwise wait for a 100 Continue before the body.
            proc = spawn(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:",
                          "-H", "Content-Type: application/octet-stream", "-T",
                          str(inputs.drain.path), "--limit-rate", str(plan.drain_rate), target],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            codes[i] = proc.communicate()[0]
            _started.remove(proc)
            if codes[i] != "201":
                return
            try:
                with rc.Client(server.url) as pusher:
                    config = json.dumps({"architecture": "amd64", "os": "linux",
                                         "rootfs": {"type": "layers",
                                                    "diff_ids": [inputs.drain.digest]}}).encode()
                    config_digest = pusher.push_bytes(repos[i], config)
                    manifest = json.dumps({
                        "schemaVersion": 2, "mediaType": rc.OCI_MANIFEST,
                        "config": {"mediaType": rc.OCI_CONFIG, "digest": config_digest,
                                   "size": len(config)},
                        "layers": [{"mediaType": rc.OCI_LAYER, "digest": inputs.drain.digest,
                                    "size": plan.drain_upload_size}],
                    }).encode()
                    pusher.push_manifest(repos[i], "v1", manifest)
                codes[i] = "pushed"
            except rc.RegistryError as e:
                codes[i] = f"refused: {e}"
            ends[i] = time.perf_counter()

        threads = [threading.Thread(target=push, args=(i, t)) for i, t in enumerate(uploads)]
        for t in threads:
            t.start()
        # Take the hold once every layer is in flight, about a quarter into its transfer.
        in_flight = wait_in_flight(client, plan.drain_uploads, timeout=10.0)
        time.sleep(plan.drain_upload_size / plan.drain_rate / 4)
        hold_at = time.perf_counter()
        m["drain_ms"] = take_hold(client, "drain", "120s")
        read_only_at = time.perf_counter()
        for t in threads:
            t.join()
        release_hold(client, "drain")
        failed = [c for c in codes if c != "pushed"]
        if failed:
            log(f"pushes through the drain that failed: {failed}")
        m["drain_in_flight"] = in_flight
        m["drain_uploads_ok"] = len(codes) - len(failed)
        m["drain_last_upload_ms"] = (max(ends) - hold_at) * 1000
        m["drain_after_last_upload_ms"] = (read_only_at - max(ends)) * 1000
    return m


def urljoin(base: str, location: str) -> str:
    return location if location.startswith("http") else base + location


def wait_in_flight(client: rc.Client, want: int, timeout: float) -> int:
    """Waits until the server counts `want` writes in flight; answers the last count seen."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = json.loads(client.expect(200, "GET", "/api/v1/state").body)["writes_in_flight"]
        if seen >= want:
            break
        time.sleep(0.02)
    return seen


def registry_session(kind: str, plan: Plan, inputs: Inputs, work: Path, run: int,
                     wharf_bin: str) -> dict:
    """Everything measured on one registry in one run, on a fresh server."""
    name = f"{kind}-r{run}"
    if kind == "peer":
        server = start_peer(work, name)
    else:
        server = start_wharf(wharf_bin, work, name, fsync=(kind == "wharf_fsync"))
    try:
        settle()
        m = {"rss_idle": rss_mib(server.pid)}
        log(f"run {run}: {kind}: pushes")
        m.update(pushes(server, plan, inputs, run, memory=(kind != "wharf_fsync")))
        if kind == "wharf_fsync":
            return m  # the fsync variant only changes what pushes do
        log(f"run {run}: {kind}: pulls")
        m.update(pulls(server.url, plan, f"/v2/bench/mono-{size_key(plan.pull_size)}-r{run}"
                                         f"/blobs/{inputs.pull.digest}", server.pid))
        log(f"run {run}: {kind}: small requests")
        m.update(small_requests(server, plan, run))
        log(f"run {run}: {kind}: listings")
        m.update(listings(server, plan, run, referrers=(kind == "wharf")))
        if kind == "wharf":
            # Before skopeo: a hold waits drain.push_grace (5 s) after recent uploads, and
            # these figures are about toggling with none under way.
            log(f"run {run}: {kind}: read-only toggles under pull load")
            m.update(toggles(server, plan, run))
        log(f"run {run}: {kind}: skopeo")
        m.update(skopeo_push_pull(server, inputs, work, run))
        if kind == "wharf":
            log(f"run {run}: {kind}: holds and the drain")
            m.update(drains(server, plan, inputs, run))
        if server.proc.poll() is not None:
            raise RuntimeError(f"{kind} died during the run; see {server.log_path}")
        if kind == "wharf":
            log(f"run {run}: {kind}: fsck (Wharf hashing what it stored)")
            stop(server.proc)
            m["fsck_mib_s"] = fsck_rate(wharf_bin, server)
        return m
    finally:
        server.stop()


def fsck_rate(binary: str, server: Server) -> float:
    """MiB/s of `wharf fsck` reading and hashing every blob the stopped `server` stored, from
    the page cache: Wharf's own SHA-256, as it runs on this machine, to set beside openssl's.
    The whole command is timed (start-up and the metadata checks too), so this errs low."""
    warm(server.data)
    started = time.perf_counter()
    out = subprocess.run([binary, "fsck", "--json", "--config", str(server.config)],
                         capture_output=True, text=True, env=wharf_env(), stdin=subprocess.DEVNULL)
    secs = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"wharf fsck failed ({out.returncode}): {out.stdout}{out.stderr}")
    return json.loads(out.stdout)["bytes_verified"] / MiB / secs


def reference(plan: Plan, inputs: Inputs, work: Path, run: int, bare_bin: str) -> dict:
    """The machine's limits: nginx sending the pull blob from disk, the bare upload endpoint
    taking the pushes (in both layouts, and the better of the two per push), openssl hashing."""
    proc, url = start_nginx(work, inputs.dir, inputs.pull.path.name)
    try:
        name = inputs.pull.path.name
        m = {f"nginx_{k}": v for k, v in pulls(url, plan, f"/sendfile/{name}", None).items()}
        m.update({f"nginx_rw_{k}": v
                  for k, v in pulls(url, plan, f"/readwrite/{name}", None).items()})
    finally:
        stop(proc)
    for layout in BARE_LAYOUTS:
        server = start_bare(bare_bin, work, f"bare{layout}-r{run}", layout)
        try:
            m.update({f"bare{layout}_{k}": v
                      for k, v in pushes(server, plan, inputs, run, memory=False).items()})
        finally:
            server.stop()
    for key in [k.removeprefix(f"bare{BARE_LAYOUTS[0]}_") for k in m
                if k.startswith(f"bare{BARE_LAYOUTS[0]}_")]:
        m[f"bare_{key}"] = max(m[f"bare{layout}_{key}"] for layout in BARE_LAYOUTS)
    warm(inputs.largest.path)
    best = float("inf")
    for _ in range(3):  # a limit: the best of three
        started = time.perf_counter()
        subprocess.run(["openssl", "dgst", "-sha256", str(inputs.largest.path)], check=True,
                       stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    m["openssl_sha256"] = inputs.largest.size / MiB / best
    return m


# --- blobs in S3 --------------------------------------------------------------------------------

class S3Server:
    """An s3s-fs on loopback with a bucket `wharf` and access keys (signatures checked), its
    data under the work directory: the S3 server Wharf and the plain client are measured on."""

    def __init__(self, binary: str, work: Path, name: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access, self.secret = f"bench-{os.getpid()}", os.urandom(12).hex()
        self.data = work / f"data-{name}"
        (self.data / "wharf").mkdir(parents=True)
        self.log_path = work / f"{name}.log"
        with open(self.log_path, "ab") as out:
            self.proc = spawn([binary, "--host", "127.0.0.1", "--port", str(self.port),
                               "--access-key", self.access, "--secret-key", self.secret,
                               str(self.data)], stdout=out, stderr=out,
                              stdin=subprocess.DEVNULL)
        # Any answer means it listens (a GET of / without a signature is refused).
        wait_ready(self.proc, self.url + "/", name, log_path=self.log_path, any_answer=True)

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.data, ignore_errors=True)


class MotoServer:
    """moto's S3 server on loopback with a bucket `wharf`: where Distribution's S3 driver runs
    (it lists multipart uploads, which s3s-fs 0.14 answers with 501 — the peer then fails every
    monolithic push). moto keeps objects in memory and checks no signature; its keys are any."""

    def __init__(self, moto_path: str, work: Path, name: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access, self.secret = "bench", "bench-secret"
        self.log_path = work / f"{name}.log"
        with open(self.log_path, "ab") as out:
            self.proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(self.port)], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": moto_path})
        wait_ready(self.proc, self.url + "/", name, log_path=self.log_path, any_answer=True)
        urllib.request.urlopen(urllib.request.Request(self.url + "/wharf", method="PUT"),
                               timeout=30).read()

    def stop(self) -> None:
        stop(self.proc)


def start_wharf_s3(binary: str, work: Path, name: str, s3: "S3Server | MotoServer") -> Server:
    """Wharf with its blobs in `s3` (default part size, 8 MiB), warn-level logs."""
    port = free_port()
    data = work / f"data-{name}"
    data.mkdir()
    keys = work / f"{name}-keys"
    keys.mkdir()
    (keys / "id").write_text(s3.access)
    (keys / "secret").write_text(s3.secret)
    config = work / f"{name}.yaml"
    config.write_text(
        "server:\n"
        f"  listen: 127.0.0.1:{port}\n"
        "storage:\n"
        f"  data_dir: {data}\n"
        "  backend: s3\n"
        "  s3:\n"
        "    bucket: wharf\n"
        f"    prefix: {name}\n"
        f"    endpoint: {s3.url}\n"
        "    path_style: true\n"
        "    allow_http: true\n"
        f"    access_key_id_file: {keys / 'id'}\n"
        f"    secret_access_key_file: {keys / 'secret'}\n"
        "log:\n"
        "  level: warn\n")
    log_path = work / f"{name}.log"
    with open(log_path, "ab") as out:
        proc = spawn([binary, "serve", "--config", str(config)], stdout=out, stderr=out,
                     stdin=subprocess.DEVNULL, env=wharf_env())
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url + "/healthz", name, log_path=log_path)
    return Server(proc, url, data, log_path, config)


def start_peer_s3(work: Path, name: str, s3: "S3Server | MotoServer") -> Server:
    """Distribution with its S3 driver on `s3` (path-style, as it addresses a regionendpoint),
    8 MiB chunks like Wharf's parts, pulls served through it, its other defaults as in
    start_peer."""
    port = free_port()
    data = work / f"data-{name}"
    config = work / f"{name}.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n"
        "  level: warn\n"
        "  accesslog:\n"
        "    disabled: true\n"
        "storage:\n"
        "  s3:\n"
        f"    accesskey: {s3.access}\n"
        f"    secretkey: {s3.secret}\n"
        "    region: us-east-1\n"
        f"    regionendpoint: {s3.url}\n"
        "    bucket: wharf\n"
        f"    rootdirectory: /{name}\n"
        "    secure: false\n"
        "    v4auth: true\n"
        f"    chunksize: {8 * MiB}\n"
        "  delete:\n"
        "    enabled: true\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        # Pulls through the registry, as Wharf serves them by default (not a redirect to S3).
        "  redirect:\n"
        "    disable: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n")
    log_path = work / f"{name}.log"
    with open(log_path, "ab") as out:
        # Without AWS_CA_BUNDLE: the AWS SDK of Distribution 2.8 panics on it ("unsupported
        # transport"), and the endpoint is plain HTTP on loopback anyway.
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        proc = spawn([PEER_BIN, "serve", str(config)], stdout=out, stderr=out,
                     stdin=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url + "/v2/", name, log_path=log_path)
    return Server(proc, url, data, log_path)


def s3_pushes_and_pulls(server: Server, sizes: tuple[int, ...], chunk: int,
                        inputs: "S3Inputs", run: int, memory: bool) -> dict:
    """Monolithic and chunked pushes of each size, then one pull of each monolithic blob;
    MiB/s. With `memory`, the server's peak RSS during the largest monolithic push."""
    m = {}
    with rc.Client(server.url) as client:
        for size in sizes:
            mono, chunked = inputs.mono[size], inputs.chunked[size]
            key = size_key(size)
            warm(mono.path)
            largest = memory and size == max(sizes)
            if largest:
                reset_peak(server.pid)
            repo = f"bench/s3-mono-{key}-r{run}"
            m[f"push_mono_{key}"] = size / MiB / timed(client.push_monolithic, repo,
                                                        str(mono.path), mono.digest)
            if largest:
                m["mem_push"] = peak_mib(server.pid)
            warm(chunked.path)
            m[f"push_chunked_{key}"] = size / MiB / timed(
                client.push_chunked, f"bench/s3-chunked-{key}-r{run}", str(chunked.path),
                chunked.digest, chunk)
            m[f"pull_{key}"] = size / MiB / timed(client.read_through,
                                                   f"/v2/{repo}/blobs/{mono.digest}")
    return m


def plain_client(s3, sizes: tuple[int, ...], inputs: "S3Inputs", boto_path: str) -> dict:
    """The S3 server's own speed with boto3 (bench/s3_client.py), MiB/s."""
    m = {}
    for size in sizes:
        blob = inputs.mono[size]
        warm(blob.path)
        out = subprocess.run(
            [sys.executable, str(BENCH / "s3_client.py"), s3.url, s3.access, s3.secret,
             "wharf", f"plain/{size_key(size)}", str(blob.path)],
            capture_output=True, text=True, check=True, timeout=3600,
            env={**os.environ, "PYTHONPATH": boto_path}).stdout
        r = json.loads(out)
        m[f"plain_push_{size_key(size)}"] = size / MiB / r["put_s"]
        m[f"plain_pull_{size_key(size)}"] = size / MiB / r["get_s"]
    return m


class S3Inputs:
    """The S3 benchmark's blobs (a separate one per push, as in Inputs)."""

    def __init__(self, plan: Plan, work: Path):
        folder = work / "inputs-s3"
        folder.mkdir()
        sizes = sorted(set(plan.s3_sizes) | set(plan.moto_sizes))
        self.mono = {s: random_file(folder / f"mono-{size_key(s)}", s) for s in sizes}
        self.chunked = {s: random_file(folder / f"chunked-{size_key(s)}", s) for s in sizes}
        settle()


def s3_session(plan: Plan, inputs: S3Inputs, work: Path, run: int, wharf_bin: str,
               s3_bin: str, boto_path: str) -> dict:
    """Wharf and the plain client, each on a fresh s3s-fs of the same build (`wharf_…`,
    `plain_…`: the target against the plain client, and Wharf's memory); then Wharf,
    Distribution and the plain client each on a fresh moto (`moto_…`: the target against the
    peer, which cannot run on s3s-fs)."""
    m: dict = {}
    s3 = S3Server(s3_bin, work, f"s3-wharf-r{run}")
    try:
        server = start_wharf_s3(wharf_bin, work, f"wharf-s3-r{run}", s3)
        try:
            log(f"run {run}: wharf on S3 (s3s-fs): pushes and pulls")
            m.update({f"wharf_{k}": v for k, v in s3_pushes_and_pulls(
                server, plan.s3_sizes, plan.chunk, inputs, run, memory=True).items()})
        finally:
            server.stop()
    finally:
        s3.stop()
    s3 = S3Server(s3_bin, work, f"s3-plain-r{run}")
    try:
        log(f"run {run}: the plain S3 client (s3s-fs)")
        m.update(plain_client(s3, plan.s3_sizes, inputs, boto_path))
    finally:
        s3.stop()
    for kind in ["wharf", "peer"]:
        moto = MotoServer(boto_path, work, f"moto-{kind}-r{run}")
        try:
            name = f"{kind}-moto-r{run}"
            server = (start_wharf_s3(wharf_bin, work, name, moto) if kind == "wharf"
                      else start_peer_s3(work, name, moto))
            try:
                log(f"run {run}: {kind} on S3 (moto): pushes and pulls")
                m.update({f"moto_{kind}_{k}": v for k, v in s3_pushes_and_pulls(
                    server, plan.moto_sizes, plan.chunk, inputs, run, memory=False).items()})
            finally:
                server.stop()
        finally:
            moto.stop()
    moto = MotoServer(boto_path, work, f"moto-plain-r{run}")
    try:
        log(f"run {run}: the plain S3 client (moto)")
        m.update({f"moto_{k}": v for k, v in plain_client(moto, plan.moto_sizes, inputs,
                                                          boto_path).items()})
    finally:
        moto.stop()
    for size in plan.s3_sizes:
        key = size_key(size)
        for push in ["push_mono", "push_chunked"]:
            m[f"ratio_plain_{push}_{key}"] = (m[f"wharf_{push}_{key}"]
                                              / m[f"plain_push_{key}"])
        m[f"ratio_plain_pull_{key}"] = m[f"wharf_pull_{key}"] / m[f"plain_pull_{key}"]
    for size in plan.moto_sizes:
        key = size_key(size)
        for what in ["push_mono", "push_chunked", "pull"]:
            m[f"ratio_moto_peer_{what}_{key}"] = (m[f"moto_wharf_{what}_{key}"]
                                                  / m[f"moto_peer_{what}_{key}"])
    return m


# --- the machine -------------------------------------------------------------------------------

def cmd_out(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def page_reclaim() -> str:
    """Proactive reclaim the kernel runs (DAMON schemes paging out idle memory), if any: it
    takes page cache from files nobody has read for a while, whatever memory is free."""
    schemes = []
    for kdamond in Path("/sys/kernel/mm/damon/admin/kdamonds").glob("[0-9]*"):
        try:
            if (kdamond / "state").read_text().strip() != "on":
                continue
            for ctx in (kdamond / "contexts").glob("[0-9]*"):
                aggr_us = int((ctx / "monitoring_attrs/intervals/aggr_us").read_text())
                for scheme in (ctx / "schemes").glob("[0-9]*"):
                    if (scheme / "action").read_text().strip() != "pageout":
                        continue
                    age = int((scheme / "access_pattern/age/min").read_text()) * aggr_us / 1e6
                    quota = int((scheme / "quotas/bytes").read_text())
                    per_ms = int((scheme / "quotas/reset_interval_ms").read_text())
                    schemes.append(f"DAMON pages out memory idle for {age:.0f} s or more"
                                   + (f" (up to {size_label(quota)} per {per_ms / 1000:g} s)"
                                      if quota else ""))
        except (OSError, ValueError):
            schemes.append("DAMON is on (its settings could not be read)")
    return "; ".join(schemes) or "none found"


# --- memory the host takes back ----------------------------------------------------------------
# On a VM with virtio-balloon free page reporting, every page the page cache takes from the free
# pool costs a host page fault, paid per byte pushed by every server alike: it narrows the ratios
# and makes them noisy. Why and how much: "Memory the host takes back" on the page (report.py).

PAGE_REPORTING_ORDER = Path("/sys/module/page_reporting/parameters/page_reporting_order")
# Only free blocks of this order or larger are reported; the buddy allocator's largest is 10.
NO_PAGE_REPORTING = 11


def keep_guest_memory(warm: int) -> str:
    """Turns free page reporting off until the harness ends and writes `warm` bytes of memory
    once, if the kernel reports free pages; answers what it did, for the page."""
    try:
        order = int(PAGE_REPORTING_ORDER.read_text())
    except (OSError, ValueError):
        return "none (the kernel does not report free pages to a host)"
    if order < NO_PAGE_REPORTING:
        try:
            PAGE_REPORTING_ORDER.write_text(str(NO_PAGE_REPORTING))
        except OSError as e:
            log(f"warning: cannot turn free page reporting off ({e}); pushes will pay the "
                "host's page faults")
            return (f"free page reporting to the host is on (blocks of order {order} and up) "
                    "and could not be turned off: pushes pay a host page fault per page cached")
        atexit.register(PAGE_REPORTING_ORDER.write_text, str(order))
    log(f"free page reporting off; writing {size_label(warm)} of memory once")
    block = b"\x01" * (64 * MiB)
    with mmap.mmap(-1, warm) as memory:
        for _ in range(warm // len(block)):
            memory.write(block)
    was = f"order {order} and up" if order < NO_PAGE_REPORTING else "already off"
    return (f"free page reporting to the host (virtio-balloon; {was}) off while the harness "
            f"ran, restored after; {size_label(warm)} of memory written once before the runs")


def machine(work: Path, wharf_bin: str, wharf_source: str) -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    flags = re.search(r"flags\s*:\s*(.*)", cpuinfo)
    flagset = set(flags.group(1).split()) if flags else set()
    meminfo = Path("/proc/meminfo").read_text()
    mem_kib = int(re.search(r"MemTotal:\s*(\d+)", meminfo).group(1))
    os_name = "unknown"
    if Path("/etc/os-release").exists():
        found = re.search(r'PRETTY_NAME="([^"]*)"', Path("/etc/os-release").read_text())
        os_name = found.group(1) if found else os_name
    fs = cmd_out(["findmnt", "-no", "FSTYPE", "-T", str(work)])
    device = subprocess.run(["df", "--output=source", str(work)], capture_output=True,
                            text=True).stdout.split()[-1]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cpu_features": " ".join(f for f in ("sha_ni", "avx2", "avx512f") if f in flagset),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": os_name,
        "work_fs": f"{fs} on {device}",
        "page_reclaim": page_reclaim(),
        "versions": {
            "wharf": cmd_out([wharf_bin, "--version"]),
            "wharf_source": wharf_source,
            "peer": cmd_out([PEER_BIN, "--version"]),
            "nginx": cmd_out(["nginx", "-v"]),
            "openssl": cmd_out(["openssl", "version"]),
            "wrk": cmd_out(["wrk", "-v"]).split(" Copyright")[0],
            "ab": cmd_out(["ab", "-V"]).replace("This is ", "").split(" <")[0],
            "skopeo": cmd_out(["skopeo", "--version"]),
            "curl": " ".join(cmd_out(["curl", "--version"]).split()[:2]),
            "python": platform.python_version(),
        },
    }


# --- what else runs on the machine ------------------------------------------------------------
# The figures are only as good as the machine is quiet. Before each run the harness waits (a
# while) for it to be idle, and during each run it counts the CPU time used by processes that
# are not its own: all CPU time in /proc/stat minus what the harness and every process it
# started (all waited for, so counted in its children's times) used.

def cpu_busy_s() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def wait_quiet(max_wait: float = 600.0, busy_limit: float = 0.1, window: float = 5.0) -> float:
    """Waits until the machine's CPUs are less than `busy_limit` busy over `window` seconds
    (other than by the harness), at most `max_wait` seconds; answers the last busy fraction."""
    deadline = time.monotonic() + max_wait
    cores = os.cpu_count() or 1
    while True:
        busy0, own0 = cpu_busy_s(), own_cpu_s()
        time.sleep(window)
        busy = max(0.0, (cpu_busy_s() - busy0) - (own_cpu_s() - own0)) / (window * cores)
        if busy < busy_limit:
            return busy
        if time.monotonic() > deadline:
            log(f"warning: the machine is still {100 * busy:.0f}% busy with other work; "
                "going on (it will show in the figures)")
            return busy
        log(f"waiting for the machine to be quiet ({100 * busy:.0f}% busy with other work)")
        time.sleep(5.0)


# --- main --------------------------------------------------------------------------------------

def median_of(runs: list[dict]) -> dict:
    """Per series and metric, the median over the runs (and min/max for the chart)."""
    out: dict[str, dict] = {}
    for series in runs[0]:
        if series == "order":
            continue
        keys = {k for r in runs for k in r.get(series, {})}
        out[series] = {}
        for k in sorted(keys):
            vals = [r[series][k] for r in runs if r.get(series, {}).get(k) is not None]
            if not vals:
                continue
            out[series][k] = {"median": statistics.median(vals), "min": min(vals),
                              "max": max(vals), "runs": vals}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--wharf-bin")
    ap.add_argument("--wharf-source", default="", help="what the binary was built from")
    ap.add_argument("--bare-bin", help="bench/bare-upload's binary (bench/run builds it)")
    ap.add_argument("--s3-bin", help="s3s-fs, the S3 server of the S3 benchmarks (bench/run "
                                     "installs it); without it they are left out")
    ap.add_argument("--boto-path", default="",
                    help="a folder holding boto3, the plain S3 client (bench/run gives moto's)")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, help="where docs/benchmarks.md and .png go")
    ap.add_argument("--results", type=Path, help="where the raw JSON goes")
    ap.add_argument("--work-dir", type=Path, default=Path(os.environ.get("BENCH_WORK_DIR",
                                                                         "/var/tmp")))
    ap.add_argument("--report-only", type=Path, metavar="JSON",
                    help="only write the page and chart again from saved results")
    args = ap.parse_args()
    if args.report_only:
        data = json.loads(args.report_only.read_text())
        out_md = (args.out or ROOT / "docs") / "benchmarks.md"
        report.write(data, out_md, out_md.with_suffix(".png"), args.report_only)
        log(f"wrote {out_md} and {out_md.with_suffix('.png')}")
        return 0
    if not args.wharf_bin or not args.bare_bin:
        ap.error("--wharf-bin and --bare-bin are needed (bench/run gives them)")

    plan = SMOKE if args.smoke else FULL
    if args.runs:
        plan = dataclasses.replace(plan, runs=args.runs)
    out_md = (args.out or ROOT / "docs") / "benchmarks.md"
    results_json = args.results or (BENCH / "results" / "benchmarks.json")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wharf-bench-", dir=args.work_dir))
    atexit.register(shutil.rmtree, work, True)

    log(f"work directory {work}; {plan.runs} run(s){' (smoke)' if args.smoke else ''}")
    info = machine(work, args.wharf_bin, args.wharf_source)
    # Before the inputs are written: they are page cache too. A third of the memory covers the
    # page cache a run adds (its inputs, and the data of the one server running at a time).
    info["host_memory"] = ("left as it is (smoke run)" if args.smoke else
                           keep_guest_memory(min(8, int(info["memory_gib"] // 3)) * GiB))
    inputs = Inputs(plan, work)
    s3_inputs = S3Inputs(plan, work) if args.s3_bin else None
    started = time.monotonic()
    runs = []
    for run in range(1, plan.runs + 1):
        # Alternate which registry goes first, so that drift during a run touches both.
        order = ["wharf", "peer"] if run % 2 else ["peer", "wharf"]
        if plan.fsync_variant:
            order.append("wharf_fsync")
        result = {"order": order, "env": {"loadavg_1m": os.getloadavg()[0]}}
        other = measured = 0.0
        for kind in ["reference", *order]:
            if not args.smoke:
                wait_quiet()
            busy0, own0, t0 = cpu_busy_s(), own_cpu_s(), time.monotonic()
            if kind == "reference":
                log(f"run {run}/{plan.runs}: reference points (nginx, bare-upload, openssl)")
                result[kind] = reference(plan, inputs, work, run, args.bare_bin)
            else:
                result[kind] = registry_session(kind, plan, inputs, work, run, args.wharf_bin)
            # CPU time used meanwhile by other processes (and kernel threads: writeback,
            # softirqs), as a share of the machine.
            other += max(0.0, (cpu_busy_s() - busy0) - (own_cpu_s() - own0))
            measured += (time.monotonic() - t0) * (os.cpu_count() or 1)
        if s3_inputs:
            if not args.smoke:
                wait_quiet()
            log(f"run {run}/{plan.runs}: blobs in S3 (s3s-fs): Wharf, Distribution, a plain client")
            result["s3"] = s3_session(plan, s3_inputs, work, run, args.wharf_bin, args.s3_bin,
                                      args.boto_path)
        result["env"]["other_cpu_share"] = other / measured
        runs.append(result)
        log(f"run {run} done: {json.dumps(result)}")
    elapsed = time.monotonic() - started

    data = {"machine": info, "plan": dataclasses.asdict(plan), "smoke": args.smoke,
            "elapsed_s": round(elapsed), "runs": runs, "median": median_of(runs)}
    results_json.parent.mkdir(parents=True, exist_ok=True)
    results_json.write_text(json.dumps(data, indent=1) + "\n")
    out_md.parent.mkdir(parents=True, exist_ok=True)
    report.write(data, out_md, out_md.with_suffix(".png"), results_json)
    log(f"wrote {out_md}, {out_md.with_suffix('.png')} and {results_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
