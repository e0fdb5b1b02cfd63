#!/usr/bin/python3
"""Where Wharf spends its time in the benchmark's three heaviest loads: the monolithic 1 GiB
push, the 32-stream pull and the manifest GET by tag under 32 connections.

    bench/profile.py [--tool perf|callgrind|both] [--out DIR]

Uses WHARF_BIN, else builds target/release/wharf. Writes one report per load and tool into
bench/results/profile/ (or --out): the functions with the most samples (perf) or instructions
(callgrind), self and with callees.

- perf samples the whole process, kernel included (copies, syscalls), on the cpu-clock software
  event, since virtual machines often have no hardware counters (`perf stat -e instructions`
  then says "not supported"). Needs linux-perf.
- callgrind counts user-space instructions exactly but runs the server ~50x slower, so its loads
  are smaller (a 64 MiB push, a few seconds of the others). Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402
import registry_client as rc  # noqa: E402

MiB, GiB = h.MiB, h.GiB


def top_lines(report: str, n: int, start: str = "") -> str:
    """The first `n` entries of a report (from the line containing `start`), without blank
    and comment lines."""
    lines = report.splitlines()
    if start:
        lines = lines[next((i for i, line in enumerate(lines) if start in line), 0):]
    kept = [line.rstrip() for line in lines if line.strip() and not line.startswith("#")]
    return "\n".join(kept[:n]) + "\n"


def wharf_binary() -> str:
    if os.environ.get("WHARF_BIN"):
        return os.environ["WHARF_BIN"]
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "wharf"], cwd=h.ROOT,
                   check=True)
    return str(h.ROOT / "target" / "release" / "wharf")


def prepare(server: h.Server, blob: h.Blob, pull_blob: h.Blob) -> str:
    """Pushes what the pull and GET loads read; answers the manifest URL."""
    with rc.Client(server.url) as client:
        client.push_monolithic("prof/pull", str(pull_blob.path), pull_blob.digest)
        rc.small_image(client, "prof/small", ["v0"])
    return f"{server.url}/v2/prof/small/manifests/v0"


def loads(server: h.Server, push: h.Blob, pull: h.Blob, seconds: int):
    """The three loads, as (name, function) pairs, in the order they are profiled."""
    def push_load():
        with rc.Client(server.url) as client:
            client.push_monolithic("prof/push", str(push.path), push.digest)

    def pull_load():
        h.run_pull_load(f"{server.url}/v2/prof/pull/blobs/{pull.digest}", seconds, 32)

    def manifest_load():
        h.run_wrk(f"{server.url}/v2/prof/small/manifests/v0", seconds, 32, "GET",
                  rc.OCI_MANIFEST)

    return [("push-mono", push_load), ("pull-32", pull_load), ("manifest-get", manifest_load)]


def with_perf(binary: str, work: Path, out: Path, inputs: dict) -> None:
    server = h.start_wharf(binary, work, "prof-perf", fsync=False)
    try:
        prepare(server, inputs["push"], inputs["pull"])
        for name, load in loads(server, inputs["push"], inputs["pull"], 10):
            data = work / f"{name}.perf.data"
            # DWARF unwinding works from .eh_frame, so a release build without debug info
            # still gets call chains (frame pointers are omitted by default).
            rec = h.spawn(["perf", "record", "-q", "-e", "cpu-clock", "-F", "499",
                           "--call-graph", "dwarf,16384", "-p", str(server.pid), "-o", str(data)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # perf attaches
            if name == "push-mono":  # make it last long enough for a good sample
                for _ in range(3):
                    load()
            else:
                load()
            rec.send_signal(2)
            rec.wait()
            h._started.remove(rec)
            report = []
            for title, extra in (("self", ["--no-children"]), ("with callees", ["--children"])):
                r = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-g", "none",
                                    "--percent-limit", "0.5", "--sort", "dso,symbol", *extra],
                                   capture_output=True, text=True)
                report.append(f"## {title}\n\n{top_lines(r.stdout, 60)}")
            (out / f"perf-{name}.txt").write_text("\n".join(report))
            h.log(f"perf: {name} done")
    finally:
        server.stop()


def control(command: list[str], pid: int) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def with_callgrind(binary: str, work: Path, out: Path, inputs: dict) -> None:
    """Runs Wharf under callgrind with instrumentation off, switching it on (counters zeroed)
    around each load and dumping the counts after it."""
    port = h.free_port()
    data = work / "data-prof-cg"
    config = work / "prof-cg.yaml"
    config.write_text(f"server:\n  listen: 127.0.0.1:{port}\nstorage:\n  data_dir: {data}\n"
                      "  fsync: false\nlog:\n  level: warn\n")
    cg_out = work / "callgrind.out"
    proc = h.spawn(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={cg_out}", binary, "serve", "--config", str(config)],
                   env=h.wharf_env(), stdout=subprocess.DEVNULL, stderr=open(work / "callgrind.log", "wb"))
    url = f"http://127.0.0.1:{port}"
    h.wait_ready(proc, url + "/healthz", "wharf under callgrind", timeout=120)
    server = h.Server(proc, url, data, work / "callgrind.log")
    try:
        prepare(server, inputs["push"], inputs["pull"])
        dumps = {}
        for name, load in loads(server, inputs["push"], inputs["pull"], 5):
            before = set(work.glob("callgrind.out*"))
            for command in (["-i", "on"], ["-z"]):
                control(command, proc.pid)
            load()
            for command in (["-d", name], ["-i", "off"]):
                control(command, proc.pid)
            (dumps[name],) = set(work.glob("callgrind.out*")) - before
            h.log(f"callgrind: {name} done")
    finally:
        server.stop()
    for name, dump in dumps.items():
        report = []
        for title, extra in (("self", []), ("inclusive", ["--inclusive=yes"])):
            r = subprocess.run(["callgrind_annotate", "--threshold=95", *extra, str(dump)],
                               capture_output=True, text=True)
            report.append(f"## {title}\n\n{top_lines(r.stdout, 60, start='PROGRAM TOTALS')}")
        (out / f"callgrind-{name}.txt").write_text("\n".join(report))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tool", choices=("perf", "callgrind", "both"), default="both")
    ap.add_argument("--out", type=Path, default=h.BENCH / "results" / "profile")
    args = ap.parse_args()
    binary = wharf_binary()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wharf-profile-", dir="/var/tmp"))
    try:
        if args.tool in ("perf", "both"):
            inputs = {"push": h.random_file(work / "push", GiB),
                      "pull": h.random_file(work / "pull", 256 * MiB)}
            with_perf(binary, work, args.out, inputs)
        if args.tool in ("callgrind", "both"):
            inputs = {"push": h.random_file(work / "push-small", 64 * MiB),
                      "pull": h.random_file(work / "pull-small", 64 * MiB)}
            with_callgrind(binary, work, args.out, inputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    h.log(f"reports in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
