"""Turns the harness's results into docs/benchmarks.md and its chart.

Every figure in the document is the median over the runs (min and max are in the chart's error
bars and every run's value in the JSON). A target is judged on the medians of the same
invocation: a Wharf median against the peer's, nginx's or openssl's median.
"""

from __future__ import annotations

import functools
import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

MiB, GiB = 1 << 20, 1 << 30


# bench/bare-upload's thread layouts, as the harness names its figures (bare2_…, bare3_…).
BARE_LAYOUTS = (2, 3)

# Every load's failed-request count, per registry.
ERROR_KEYS = ("pull_1_errors", "pull_n_errors", "manifest_get_errors", "blob_head_errors",
              "tags_list_errors", "tags_list_big_errors", "tags_page_100_errors",
              "catalog_page_1000_errors", "catalog_page_100_errors", "manifest_head_errors",
              "referrers_errors")


def size_label(n: int) -> str:
    return f"{n // GiB} GiB" if n % GiB == 0 else f"{n // MiB} MiB"


def size_key(n: int) -> str:
    return f"{n // GiB}g" if n % GiB == 0 else f"{n // MiB}m"


def down(v: float) -> str:
    """A percentage rounded down: judged against a line, it never reads as reaching it when it
    does not (74.6% of a 75% target shows as 74%, not 75%)."""
    return f"{math.floor(v)}"


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if unit == "ms" and v < 10:
        return f"{v:.2f}"
    if abs(v) >= 100 or v == int(v):
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


@dataclass
class Row:
    label: str
    unit: str
    higher_better: bool
    wharf: float | None
    peer: float | None
    target: str = "—"
    met: bool | None = None
    why: str = ""          # the measured figures a target is judged on
    others: tuple = ()     # more figures shown beside these (the bare endpoint's layouts)


def median(d: dict, series: str, key: str) -> float | None:
    """The median of one figure over the runs; None if these results do not have it."""
    v = d["median"].get(series, {}).get(key)
    return v["median"] if v else None


def listing_rows(d: dict) -> list[Row]:
    """The listings (issue "read paths as fast as a manifest GET"), each with its p99, judged
    against Wharf's own manifest GET rate of the same run, and the 1,000-tag page against the
    peer."""
    plan, m = d["plan"], functools.partial(median, d)
    n = plan["connections"]
    manifest_get = m("wharf", "manifest_get_rps")
    rows = []
    listings = (
        ("tags_list", f"Tags list ({plan['tags']} tags)", 0.8, None),
        ("tags_list_big", f"Tags list, one page of {plan['big_tags']:,} tags", None, 10),
        ("tags_page_100", f"Tags list, a page of 100 of {plan['big_tags']:,}", 0.8, None),
        ("catalog_page_1000", f"Catalog, first page of 1,000 of {plan['catalog_repos']:,}", 0.5,
         None),
        ("catalog_page_100", f"Catalog, a page of 100 of {plan['catalog_repos']:,}", 0.5, None),
        ("referrers", f"Referrers of a manifest with {plan['referrers']}", 0.5, None),
        ("manifest_head", "Manifest HEAD by digest", None, None),
    )
    for key, label, of_manifest_get, of_peer in listings:
        w, p = m("wharf", f"{key}_rps"), m("peer", f"{key}_rps")
        if w is None:
            continue  # results from before this load existed
        row = Row(f"{label}, {n} connections", "requests/s", True, w, p)
        if of_manifest_get is not None and manifest_get:
            row.target = f"≥ {down(100 * of_manifest_get)}% of Wharf's manifest GET"
            row.met = w >= of_manifest_get * manifest_get
            row.why = f"{down(100 * w / manifest_get)}% of manifest GET ({fmt(manifest_get)}/s)"
        elif of_peer is not None and p:
            row.target, row.met = f"≥ {of_peer}× peer", w >= of_peer * p
            row.why = f"{w / p:.2f}× peer"
        rows.append(row)
        rows.append(Row(f"{label}: p99 latency", "ms", False, m("wharf", f"{key}_p99_ms"),
                        m("peer", f"{key}_p99_ms")))
    return rows


def build_rows(d: dict) -> tuple[list[Row], list[Row], list[Row], list[Row], list[Row]]:
    plan = d["plan"]

    m = functools.partial(median, d)

    sha = m("reference", "openssl_sha256")
    nginx = {"pull_1": m("reference", "nginx_pull_1"), "pull_n": m("reference", "nginx_pull_n")}
    nginx_rw = {"pull_1": m("reference", "nginx_rw_pull_1"),
                "pull_n": m("reference", "nginx_rw_pull_n")}
    n = plan["connections"]

    main: list[Row] = []
    # Pushes: the target is on every push figure.
    pushes = [("mono", s, "monolithic") for s in plan["mono_sizes"]] + \
             [("chunked", s, f"chunked ({size_label(plan['chunk'])} PATCHes)")
              for s in plan["chunked_sizes"]]
    for kind, size, how in pushes:
        key = f"push_{kind}_{size_key(size)}"
        w, p = m("wharf", key), m("peer", key)
        row = Row(f"Blob push, {how}, {size_label(size)}", "MiB/s", True, w, p,
                  f"≥ 4× peer and ≥ 75% of sha256 ({fmt(0.75 * sha)} MiB/s)")
        row.met = w >= 4 * p and w >= 0.75 * sha
        row.why = f"{w / p:.2f}× peer, {down(100 * w / sha)}% of sha256"
        bare = m("reference", f"bare_{key}")
        if bare:
            row.why += f"; {100 * w / bare:.0f}% of the bare endpoint"
        main.append(row)
    for key, label in (("pull_1", "Blob pull, 1 stream"), ("pull_n", f"Blob pull, {n} streams")):
        w, p = m("wharf", key), m("peer", key)
        row = Row(f"{label} ({size_label(plan['pull_size'])} blob)", "MiB/s", True, w, p,
                  f"≥ 1.2× peer and ≥ 80% of nginx ({fmt(0.8 * nginx[key])} MiB/s)")
        row.met = w >= 1.2 * p and w >= 0.8 * nginx[key]
        row.why = f"{w / p:.2f}× peer, {down(100 * w / nginx[key])}% of nginx"
        if nginx_rw[key]:
            row.why += f"; {100 * w / nginx_rw[key]:.0f}% of nginx read/write"
        main.append(row)
    for key, label in (("manifest_get", "Manifest GET by tag"), ("blob_head", "Blob HEAD")):
        w, p = m("wharf", f"{key}_rps"), m("peer", f"{key}_rps")
        row = Row(f"{label}, {n} connections", "requests/s", True, w, p)
        if key == "manifest_get":
            row.target, row.met = "≥ 5× peer", w >= 5 * p
            row.why = f"{w / p:.2f}× peer"
        main.append(row)
        main.append(Row(f"{label}: p99 latency", "ms", False, m("wharf", f"{key}_p99_ms"),
                        m("peer", f"{key}_p99_ms")))
    main.extend(listing_rows(d))
    w, p = m("wharf", "mem_push"), m("peer", "mem_push")
    row = Row(f"Peak RSS during the {size_label(max(plan['mono_sizes']))} push", "MiB", False,
              w, p, "≤ 64 MiB and ≤ peer")
    row.met = w <= 64 and w <= p
    row.why = f"{w:.0f} MiB vs peer {p:.0f} MiB"
    main.append(row)
    main.append(Row(f"Peak RSS during the {n}-stream pull", "MiB", False,
                    m("wharf", "mem_pull"), m("peer", "mem_pull")))
    main.append(Row("RSS idle, just started", "MiB", False, m("wharf", "rss_idle"),
                    m("peer", "rss_idle")))
    img = f"{plan['skopeo_layers']} layers, {size_label(plan['skopeo_bytes'])}"
    main.append(Row(f"skopeo copy push ({img})", "s", False, m("wharf", "skopeo_push_s"),
                    m("peer", "skopeo_push_s")))
    main.append(Row(f"skopeo copy pull ({img})", "s", False, m("wharf", "skopeo_pull_s"),
                    m("peer", "skopeo_pull_s")))

    # Read-only mode: Wharf only.
    ro: list[Row] = []
    ro.append(Row("Hold → read-only in effect, nothing in flight", "ms", False,
                  m("wharf", "hold_idle_ms"), None))
    ro.append(Row(f"Hold → read-only in effect, {plan['drain_uploads']} pushes in flight "
                  f"(the drain)", "ms", False, m("wharf", "drain_ms"), None))
    after = m("wharf", "drain_after_last_upload_ms")
    row = Row("… of which after the last push's tagged manifest", "ms", False, after, None,
              "< 50 ms")
    row.met = after is not None and after < 50
    ro.append(row)
    ok, want = m("wharf", "drain_uploads_ok"), plan["drain_uploads"]
    row = Row("Pushes in flight at the hold that completed (layer, config, manifest)", "pushes",
              True, ok, None, f"all {want}")
    row.met = ok == want
    ro.append(row)
    errs = m("wharf", "toggle_errors")
    row = Row(f"Failed pulls during {plan['toggles']} toggles (manifest GET, {n} connections)",
              "requests", False, errs, None, "0")
    row.met = errs == 0
    ro.append(row)
    base, under = m("wharf", "toggle_base_p99_ms"), m("wharf", "toggle_p99_ms")
    ro.append(Row("Pull p99 without toggles", "ms", False, base, None))
    row = Row(f"Pull p99 during {plan['toggles']} toggles", "ms", False, under, None,
              "≤ 1.2× without")
    row.met = under <= 1.2 * base
    row.why = f"{under / base:.2f}× without"
    ro.append(row)
    ro.append(Row("Hold → read-only during the toggles (median)", "ms", False,
                  m("wharf", "toggle_hold_median_ms"), None))
    ro.append(Row("Pull rate without / during toggles", "requests/s", True,
                  m("wharf", "toggle_base_rps"), m("wharf", "toggle_rps")))

    ref = [Row("nginx sendfile, 1 stream", "MiB/s", True, nginx["pull_1"], None),
           Row(f"nginx sendfile, {n} streams", "MiB/s", True, nginx["pull_n"], None),
           Row("nginx read/write (sendfile off, 1 MiB buffers), 1 stream", "MiB/s", True,
               nginx_rw["pull_1"], None),
           Row(f"nginx read/write (sendfile off, 1 MiB buffers), {n} streams", "MiB/s", True,
               nginx_rw["pull_n"], None),
           Row(f"openssl dgst -sha256 ({size_label(max(plan['mono_sizes'] + plan['chunked_sizes']))}"
               ", warm cache)", "MiB/s", True, sha, None)]
    if m("wharf", "fsck_mib_s") is not None:  # results from before it was measured lack it
        ref.append(Row("Wharf's own SHA-256: `wharf fsck` reading and hashing every blob of a "
                       "run (warm cache)", "MiB/s", True, m("wharf", "fsck_mib_s"), None))

    # Against bench/bare-upload: Wharf's figure, each layout's, and the better layout's.
    bare = []
    for kind, size, how in pushes:
        key = f"push_{kind}_{size_key(size)}"
        if m("reference", f"bare_{key}") is None:
            continue  # results from before the bare endpoint was measured
        bare.append(Row(f"Blob push, {how}, {size_label(size)}", "MiB/s", True, m("wharf", key),
                        m("reference", f"bare_{key}"),
                        others=tuple(m("reference", f"bare{layout}_{key}")
                                     for layout in BARE_LAYOUTS)))

    fsync = []
    for kind, size, how in pushes:
        key = f"push_{kind}_{size_key(size)}"
        fsync.append(Row(f"Blob push, {how}, {size_label(size)}", "MiB/s", True,
                         m("wharf_fsync", key), m("wharf", key)))
    main.extend(s3_rows(d))
    return main, ro, ref, bare, fsync


def s3_rows(d: dict) -> list[Row]:
    """The S3 targets (the S3 issue): pushes at least 2× Distribution's S3 driver (on moto,
    where it runs) and at least 80% of the plain client (on s3s-fs), and at most 64 MiB of
    memory during the largest push."""
    if "s3" not in d["median"]:
        return []
    plan, m = d["plan"], functools.partial(median, d)
    rows = []
    for size in plan.get("moto_sizes", []):
        for kind, how in [("mono", "monolithic"), ("chunked", "chunked")]:
            key = f"push_{kind}_{size_key(size)}"
            w, p = m("s3", f"moto_wharf_{key}"), m("s3", f"moto_peer_{key}")
            row = Row(f"Blob push on S3 (moto), {how}, {size_label(size)}", "MiB/s", True, w, p,
                      "≥ 2× peer")
            if w and p:
                row.met, row.why = w >= 2 * p, f"{w / p:.2f}× peer"
            rows.append(row)
    for size in plan.get("s3_sizes", []):
        plain = m("s3", f"plain_push_{size_key(size)}")
        for kind, how in [("mono", "monolithic"), ("chunked", "chunked")]:
            w = m("s3", f"wharf_push_{kind}_{size_key(size)}")
            row = Row(f"Blob push on S3 (s3s-fs), {how}, {size_label(size)}", "MiB/s", True, w,
                      None, f"≥ 80% of the plain client ({fmt(0.8 * plain) if plain else '?'} MiB/s)")
            if w and plain:
                row.met, row.why = w >= 0.8 * plain, f"{down(100 * w / plain)}% of the plain client"
            rows.append(row)
    memory = m("s3", "wharf_mem_push")
    if memory is not None:
        largest = size_label(max(plan.get("s3_sizes", [0])))
        row = Row(f"Peak memory, {largest} monolithic push on S3", "MiB", False, memory, None,
                  "≤ 64 MiB")
        row.met, row.why = memory <= 64, f"{fmt(memory)} MiB"
        rows.append(row)
    return rows


def met_cell(row: Row, smoke: bool) -> str:
    if row.met is None:
        return ""
    if smoke:
        return "not judged (smoke)"
    verdict = "yes" if row.met else "**no**"
    return f"{verdict} ({row.why})" if row.why else verdict


def ratio(row: Row) -> str:
    if row.wharf is None or not row.peer:
        return "—"
    return f"{row.wharf / row.peer:.2f}×"


def arrow(row: Row) -> str:
    return "↑" if row.higher_better else "↓"


def table(d: dict) -> str:
    main, ro, ref, bare, fsync = build_rows(d)
    smoke = d["smoke"]
    out = ["| Measure | Unit | Wharf | Peer | Wharf / peer | Target | Met? |",
           "|---|---|--:|--:|--:|---|---|"]
    for r in main:
        out.append(f"| {r.label} | {r.unit} {arrow(r)} | {fmt(r.wharf, r.unit)} | "
                   f"{fmt(r.peer, r.unit)} | {ratio(r)} | {r.target} | {met_cell(r, smoke)} |")
    ro_lines = ["| Measure (Wharf only: Distribution has no runtime toggle) | Unit | Wharf | "
                "Target | Met? |", "|---|---|--:|---|---|"]
    for r in ro:
        value = fmt(r.wharf, r.unit)
        if r.peer is not None:  # the "without / during" pair
            value = f"{fmt(r.wharf)} / {fmt(r.peer)}"
        ro_lines.append(f"| {r.label} | {r.unit} {arrow(r)} | {value} | {r.target} | "
                        f"{met_cell(r, smoke)} |")
    ref_lines = ["| Reference point | Unit | Median |", "|---|---|--:|"]
    ref_lines += [f"| {r.label} | {r.unit} | {fmt(r.wharf)} |" for r in ref]
    layouts = " | ".join(f"bare, layout {layout}" for layout in BARE_LAYOUTS)
    bare_lines = [f"| Push | Unit | Wharf | {layouts} | Wharf / better layout |",
                  "|---|---|--:|" + "--:|" * len(BARE_LAYOUTS) + "--:|"]
    bare_lines += [f"| {r.label} | {r.unit} | {fmt(r.wharf)} | "
                   f"{' | '.join(fmt(v) for v in r.others)} | {ratio(r)} |" for r in bare]
    fs_lines = ["| Push | Unit | Wharf, fsync on (default) | Wharf, fsync off (as above) | "
                "on / off |", "|---|---|--:|--:|--:|"]
    fs_lines += [f"| {r.label} | {r.unit} | {fmt(r.wharf)} | {fmt(r.peer)} | {ratio(r)} |"
                 for r in fsync]
    summary = [r for r in main + ro if r.met is not None]
    met = sum(r.met for r in summary)
    return "\n".join(out), "\n".join(ro_lines), "\n".join(ref_lines), \
        "\n".join(bare_lines) if bare else "", "\n".join(fs_lines), (met, len(summary))


def chart(d: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med, plan = d["median"], d["plan"]
    n = plan["connections"]

    def stat(series: str, key: str) -> tuple[float, float, float]:
        v = med.get(series, {}).get(key)
        if not v:
            return 0.0, 0.0, 0.0
        return v["median"], v["median"] - v["min"], v["max"] - v["median"]

    colors = {"Wharf": "#1f77b4", "Wharf, fsync on": "#9ecae1", "peer (Distribution)": "#ff7f0e",
              "nginx sendfile": "#7f7f7f", "nginx read/write": "#c7c7c7",
              "bare upload endpoint": "#7f7f7f"}

    def bars(ax, title, unit, groups, series, line=None):
        width = 0.8 / len(series)
        for i, (name, s) in enumerate(series.items()):
            vals = [stat(s, key) for key, _ in groups] if isinstance(s, str) else \
                [stat(*s(key)) for key, _ in groups]
            xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, [v[0] for v in vals], width, label=name, color=colors[name],
                   yerr=[[v[1] for v in vals], [v[2] for v in vals]], capsize=2)
        if line:
            ax.axhline(line[0], color="#2ca02c", linestyle="--", linewidth=1, label=line[1])
        ax.set_xticks(range(len(groups)), [label for _, label in groups], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(fontsize=6)

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    push_groups = [(f"push_mono_{size_key(s)}", f"mono\n{size_label(s)}")
                   for s in plan["mono_sizes"]] + \
                  [(f"push_chunked_{size_key(s)}", f"chunked\n{size_label(s)}")
                   for s in plan["chunked_sizes"]]
    bars(axes[0][0], "Blob push (higher is better)", "MiB/s", push_groups,
         {"Wharf": "wharf", "Wharf, fsync on": "wharf_fsync", "peer (Distribution)": "peer",
          "bare upload endpoint": lambda key: ("reference", f"bare_{key}")},
         (stat("reference", "openssl_sha256")[0], "openssl sha256"))
    bars(axes[0][1], f"Blob pull, {size_label(plan['pull_size'])} (higher is better)", "MiB/s",
         [("pull_1", "1 stream"), ("pull_n", f"{n} streams")],
         {"Wharf": "wharf", "peer (Distribution)": "peer",
          "nginx sendfile": lambda key: ("reference", f"nginx_{key}"),
          "nginx read/write": lambda key: ("reference", f"nginx_rw_{key}")})
    bars(axes[0][2], f"Small requests, {n} connections (higher is better)", "requests/s",
         [("manifest_get_rps", "manifest GET\nby tag"), ("blob_head_rps", "blob HEAD"),
          ("tags_list_rps", "tags list")],
         {"Wharf": "wharf", "peer (Distribution)": "peer"})
    bars(axes[1][0], "Server peak RSS (lower is better)", "MiB",
         [("mem_push", f"{size_label(max(plan['mono_sizes']))}\npush"),
          ("mem_pull", f"{n}-stream\npull"), ("rss_idle", "idle")],
         {"Wharf": "wharf", "peer (Distribution)": "peer"}, (64, "64 MiB target"))
    bars(axes[1][1], f"skopeo copy, {plan['skopeo_layers']} layers (lower is better)", "s",
         [("skopeo_push_s", "push"), ("skopeo_pull_s", "pull")],
         {"Wharf": "wharf", "peer (Distribution)": "peer"})
    bars(axes[1][2], f"Wharf manifest GET p99 with {plan['toggles']} read-only toggles",
         "ms", [("toggle_base_p99_ms", "no toggles"), ("toggle_p99_ms", "toggles")],
         {"Wharf": "wharf"})
    title = "Wharf vs CNCF Distribution — medians of %d run(s), bars = min/max" % len(d["runs"])
    if d["smoke"]:
        title = "SMOKE RUN (tiny sizes, not a result) — " + title
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def hashing_text(d: dict) -> str:
    """What Wharf's own hashing rate, measured by `wharf fsck`, says beside openssl's."""
    fsck, sha = median(d, "wharf", "fsck_mib_s"), median(d, "reference", "openssl_sha256")
    if fsck is None:
        return ""
    share = fsck / sha
    meaning = ("so Wharf hashes as fast as this machine can (with the CPU's SHA extensions, as "
               "openssl does); what keeps a push below that rate is the rest of the push sharing "
               "the machine's cores (below)" if share >= 0.9 else
               "so Wharf's hashing itself is slower than this machine allows, and that alone "
               "holds its pushes below openssl's rate")
    return "\n" + textwrap.fill(
        f"Wharf's hashing itself is timed too: `wharf fsck` reads every blob a run stored and "
        f"checks its digest with the code a push hashes with, reading and hashing in turn, "
        f"like openssl. It ran at {fmt(fsck)} MiB/s, {100 * share:.0f}% of openssl's "
        f"rate (the whole command is timed, start-up included), {meaning}.", width=96) + "\n"


def bare_text(d: dict, table_md: str) -> tuple[str, str]:
    """The reference section's part on bench/bare-upload, and what its chunked figures say
    about the chunked-push target (whichever way they go)."""
    if not table_md:
        return "", "(These results predate the bare upload endpoint's figures.)"
    plan = d["plan"]

    m = functools.partial(median, d)

    sha = m("reference", "openssl_sha256")
    sizes = plan["chunked_sizes"]
    keys = [f"push_chunked_{size_key(s)}" for s in sizes]

    def spread(series: str, key: str) -> str:
        runs = [r[series][key] for r in d["runs"] if key in r.get(series, {})]
        return f"{fmt(min(runs))} to {fmt(max(runs))}"

    facts, reached, wharf_short = [], [], []
    for size, key in zip(sizes, keys):
        bare, wharf = m("reference", f"bare_{key}"), m("wharf", key)
        facts.append(f"at {size_label(size)}, the bare endpoint ran at {fmt(bare)} MiB/s "
                     f"({100 * bare / sha:.0f}% of sha256; run by run "
                     f"{spread('reference', f'bare_{key}')}) and Wharf at {fmt(wharf)} MiB/s "
                     f"({100 * wharf / bare:.0f}% of the bare endpoint; run by run "
                     f"{spread('wharf', key)})")
        if bare >= 0.75 * sha:
            reached.append(size_label(size))
            if wharf < bare:
                wharf_short.append(
                    f"{100 * (1 - wharf / bare):.0f}% behind it at {size_label(size)}")
    verdict = ("The bare upload endpoint, which has no framework, no database and no commit, "
               "pays the same stop on every `PATCH`: " + "; ".join(facts) + ". ")
    if not reached:
        verdict += ("On this machine the target is out of reach of a server that does nothing "
                    "but receive, write and hash, not only of Wharf.")
    elif len(reached) < len(sizes):
        verdict += (f"A server that does nothing but receive, write and hash reached the target "
                    f"at {' and '.join(reached)} only"
                    + (f"; Wharf was {' and '.join(wharf_short)}." if wharf_short
                       else ", and Wharf kept up with it there."))
    else:
        verdict += ("The target is within this machine's reach"
                    + (f": Wharf was {' and '.join(wharf_short)}."
                       if wharf_short else ", and Wharf kept up with the bare endpoint."))
    section = f"""
**Pushes against a bare upload endpoint.** `bench/bare-upload` (one file of Rust, std and sha2
only) answers the same `POST`, `PATCH` and `PUT` requests from the same client, doing only what
a push needs: it receives 256 KiB blocks, writes them to a file and hashes them with the sha2
crate Wharf uses, through queues of eight blocks as in Wharf, with no HTTP framework, async
runtime, database or durability. It runs in two thread layouts, because which is faster depends
on the workload: in layout 2 the connection's thread receives and writes and a second thread
hashes; in layout 3 a thread each receives, writes and hashes (Wharf's layout). Like Wharf, it
answers a `PATCH` once the chunk is written, its hasher finishing the chunk's last blocks while
the answer goes out and the next `PATCH` comes in; the `PUT` waits for the hash. Its figures are
what this machine allows for each kind of push with the client and the server sharing two cores;
openssl's is that limit only for a server with a core to spare. The push targets are judged as
set (4× the peer and 75% of openssl's rate); their *Met?* column also gives Wharf's share of the
better layout.

{table_md}
"""
    return section, textwrap.fill(verdict, width=96, initial_indent="  ",
                                  subsequent_indent="  ")


def write(d: dict, md: Path, png: Path, results_json: Path) -> None:
    chart(d, png)
    results, ro, ref, bare, fsync, (met, judged) = table(d)
    mach, plan, v = d["machine"], d["plan"], d["machine"]["versions"]
    n = plan["connections"]
    rel = os.path.relpath(results_json.resolve(), md.parent.resolve())
    shown = os.path.relpath(results_json.resolve(), md.parent.resolve().parent)
    raw_link = f"[`{shown}`]({rel})"
    smoke = ("\n> **Smoke run**: tiny sizes and durations, one run. It proves the harness works; "
             "its numbers mean nothing and no target is judged.\n" if d["smoke"] else "")
    verdict = "Targets are not judged in a smoke run." if d["smoke"] else \
        f"**{met} of {judged} targets met.**"
    errors = {s: sum(r.get(s, {}).get(k, 0) for r in d["runs"] for k in ERROR_KEYS)
              for s in ("wharf", "peer")}
    env = [r["env"] for r in d["runs"]]
    bare_section, chunked_verdict = bare_text(d, bare)
    disk = size_label(2 * sum(plan['mono_sizes'] + plan['chunked_sizes']))
    other = ", ".join(f"{100 * e['other_cpu_share']:.0f}%" for e in env)
    text = f"""# Benchmarks: Wharf against CNCF Distribution

<!-- Generated by bench/run; do not edit by hand: run it again. -->
{smoke}
Wharf and CNCF Distribution 2.8 (the "peer", Debian's `docker-registry`) on the same machine,
on loopback, with the same storage and the same workload; medians of {len(d['runs'])} run(s)
taken {mach['date']} (the harness ran for {d['elapsed_s'] // 60} min). {verdict}
Every run's figures are in {raw_link}. Wharf as a cluster (PostgreSQL, replicas behind nginx,
a hold reaching three replicas, pages as the registry grows) is measured apart: [cluster.md](cluster.md).

![Wharf against Distribution: pushes, pulls, small requests, memory, skopeo, read-only toggles]({png.name})

## Results

Medians; "↑" means higher is better, "↓" lower. *Wharf / peer* is the ratio of the two
medians. Targets are judged on the medians of this same invocation.

{results}

Failed requests (non-2xx answers, socket errors, timeouts) over every load of every run: Wharf
{errors['wharf']:.0f}, peer {errors['peer']:.0f}.

### Read-only mode

{ro}

### Reference points: the machine's limits

{ref}

A pull cannot beat nginx sending the file from the page cache by much; a push that checks its
digest cannot beat one core hashing with `openssl dgst -sha256` (OpenSSL uses the CPU's SHA
extensions when there are any; the figure is the best of three). The pull targets are judged
against nginx with `sendfile`, as set; nginx with plain reads and writes is measured too because
on some machines (virtual ones especially) it is the faster of the two, and then it is the
better measure of the machine's limit: the *Met?* column gives both percentages.
{hashing_text(d)}{bare_section}
### Where the time goes

What `perf` (`bench/profile.py`) shows on a two-core machine, and what that means for the
targets this page may show as missed:

- **Pushes** are bound by the two cores. Hashing is one core's work at the speed of `openssl
  dgst -sha256` (Wharf's sha2 uses the SHA extensions: the same instructions, the same rate,
  about 40% of the server's CPU time); the other core receives the bytes (the kernel's loopback
  copy), copies them into the page cache and runs the client, which sends with `sendfile`. Wharf
  hashes and writes 256 KiB blocks on two threads, each with a short queue, while the next
  blocks are received, so the hasher never idles while data is waiting. Counted on monolithic 1
  GiB pushes (context switches and CPU times from `/proc`), the hashing thread hardly ever
  waited for a block (5 to 120 times per push) but lost its core ~2,500 times per push to the
  threads receiving and writing, while the server used 1.4–1.7 cores and the client 0.1–0.2: the
  two cores together are the limit, not the hasher alone. The request's own thread slept and
  woke ~10,000–13,000 times per push, once or more per block: woken whenever a place in a full
  queue came free, it queued one block and slept again. It now sleeps until half the queue is
  free: 2,500–5,000 times per push, and in eight interleaved rounds the monolithic pushes'
  medians rose 5% (1,127 to 1,183 and 1,152 to 1,212 MiB/s; chunked pushes, which stop on every
  `PATCH` anyway, moved −2% and +1%). Blocks of 512 KiB, with half as many hand-offs between
  threads, measured 1–4% faster in eight interleaved rounds (inside the rounds' spread) and took
  a 1 GiB push's peak memory to Distribution's; not kept. The writer, several times faster than
  the hasher, sleeps between blocks, and a normal thread that wakes preempts whatever has the
  CPU: it now runs as a `SCHED_BATCH` thread, whose wake-ups do not preempt. Chunked pushes, 18
  interleaved rounds in two sets: medians +2% and +6% at 1 GiB (won 13 of 18 rounds), +4% at 256
  MiB. The opposite — the hasher at a higher priority (nice −10) — made monolithic 1 GiB pushes
  13% slower (1,195 to 1,040 MiB/s, six rounds): starving the receiving side costs more than the
  hasher gains, which is what "the two cores together are the limit" means. One `writev` per
  block instead of one `write` per received chunk changed nothing (1,189 against 1,203 MiB/s).
  Before glibc was told to keep freed buffers (`mallopt` at start), 8% of the CPU time went to
  faulting hyper's receive buffers in again. Distribution 2.8, as Debian builds it, hashes
  without the SHA extensions; how far ahead of it Wharf lands depends on how much of the machine
  the client and the kernel leave to the server. That share moves with the load on the host this
  virtual machine runs on, and it moves the two push targets in opposite directions: in three
  invocations on one day (the first two with the same serving code), openssl's rate stayed
  between 1,309 and 1,322 MiB/s while Distribution's 256 MiB monolithic push went from 195 to
  280 MiB/s and Wharf's from 968 to 1,095 MiB/s, so one invocation met 4× the peer and missed
  75% of openssl, another the reverse. Each invocation judges the targets on its own medians;
  the JSON keeps every run's figures.
- **Where a push's two cores go.** Per thread (`/proc/<tid>/schedstat`, monolithic 1 GiB
  pushes), the hasher ran 0.65–0.70 of a core and spent 0.20 of the push runnable but waiting
  for one; the two async workers receiving ran ~0.27 each and the writer ~0.37, while 0.2 of the
  two cores idled (as much as in the bare endpoint's pushes). With the async workers made batch
  threads as well (an experiment), the hasher lost its core ~200 times per push instead of
  ~3,000, yet still ran 0.65 of a core and the pushes were no faster: it waits for its share of
  two saturated cores, not for preemptions. Writing on the async worker inside tokio's
  `block_in_place` (the safe form of the bare endpoint's faster layout) made pushes 12–16%
  slower (six interleaved rounds, monolithic 1 GiB 1,098 against 1,236 MiB/s), as each call
  hands the worker's core to another thread; handing the writer two blocks at a time, half the
  wake-ups, measured +5% and +1% monolithic and −2% and −1% chunked in eight rounds (noise);
  letting the workers' threads spin briefly before they sleep, as the standard channel of the
  bare endpoint does, changed neither the speed nor the context switches.
- **Deeper queues, one allocator arena.** Queues of eight blocks (refilled at four) instead of
  four measured +2–3% monolithic and +3–8% chunked in eight interleaved rounds (the chunked
  pushes won all 16), but a 1 GiB push's peak memory rose by 4 MiB, to Distribution's (six
  blocks: +1–2.5% for 2 MiB more). The memory was the allocator's doing: glibc gives each thread
  an arena of its own, and a push's receive buffers, allocated on whichever async worker runs
  the request and freed on the hasher's and the writer's threads, filled both workers' arenas.
  With every thread on one arena (`mallopt(M_ARENA_MAX, 1)` at start), a 1 GiB push with eight
  blocks queued peaked at 18–20 MiB (chunked: 20–21), against 22–24 (25–26) with an arena per
  thread, and 19–21 (21–23) with four blocks and an arena per thread (`VmHWM`, four pushes
  each). So Wharf now queues eight blocks on one arena. Against four blocks with an arena per
  thread, in eight interleaved rounds: monolithic 256 MiB and 1 GiB +5% and +2% (1,233 and
  1,249 against 1,170 and 1,221 MiB/s), chunked +0% and +4% (962 and 984 against 959 and 949);
  in four rounds of the small-request and pull loads, nothing was slower (manifest GET 32,400
  against 26,100 requests/s, 32-stream pulls 5,020 against 4,060 MiB/s, inside a wide spread
  from round to round). The bare endpoint queues eight blocks too.
- **Chunked pushes** stop on every `PATCH`: the client sends the next chunk only once the server
  has answered. Until the change described below (*Hashing into the next `PATCH`*), Wharf
  answered once the chunk was written and hashed and its progress recorded (the length and hash
  state, so that the upload resumes anywhere); meanwhile the queues drained and the hasher
  waited. Timed inside Wharf on a machine hashing at ~1,350 MiB/s, with free page reporting off
  (medians over the 8 MiB `PATCH`es of three pushes), a `PATCH` spent ~5.7 ms receiving with the
  hasher close behind, ~1.3 ms finishing the hash after the last byte, then ~1 ms in which the
  hasher had nothing to do: the progress record, the response, the client's next request, and
  taking up the session again. The bare endpoint's gap, with no database in it, was ~0.4 ms.
  Three steps of Wharf's gap were shortened: the progress record took ~620 µs as a flushed
  SQLite transaction of four hand-offs to SQLite's thread, and is now one hand-off, not flushed
  (~200 µs; the staged bytes it describes are not flushed before the upload completes either, so
  flushing it bought nothing); each `PATCH` read its session back from the database (~130 µs)
  and now finds it in memory; the staged file (~100 µs) is opened by the thread that writes it.
  In interleaved A/B rounds of chunked pushes on fresh servers, the new progress record made
  them 7–9% faster in one set of twelve rounds (2–6% in a set of six), and the session kept in
  memory 2% more.
{chunked_verdict}
  Ways of keeping the hasher busy through the gap were tried in interleaved A/B rounds of 1 GiB
  pushes on fresh servers. Answering a `PATCH` before its hashing ends was ~20% faster in one
  set of rounds and nothing in another, and a 1 GiB push then peaked above Distribution's
  memory; built again with the same bounded queues (so no more memory), the running hasher
  kept with the upload for its next request and the saved hash state allowed to lag the bytes
  received, it measured 961 and 954 against 915 and 943 MiB/s at 256 MiB and 1 GiB, six rounds
  each, on the machine hashing at 1,371 MiB/s with free page reporting off: +5% and +1%, inside
  the rounds' spread, and it was not kept then (it is now: see the next point). Not kept:
  letting the writes run ahead of the hashing, which reads back from the page cache what it
  falls behind on (589 against 583 MiB/s: no gain); writing the progress record while the
  chunk's last blocks are still being hashed, keeping the hash state from before the chunk, so
  that the record's round trip overlaps the hashing (930 against 929 MiB/s at 1 GiB, ten rounds:
  no gain); writing on the async worker rather than a thread (+24% in one set of rounds, nothing
  in the next; and a worker that the kernel's dirty-page throttling puts to sleep stalls every
  request it serves); a faster SHA-256 (aws-lc-rs: the same speed as sha2).
  Timed again inside Wharf with queues of eight blocks (two 256 MiB pushes, medians over their
  `PATCH`es, from the request reaching the upload code): the body took ~5.6 ms to arrive; the
  hasher waited ~1.2 ms for blocks along the way, so the receiving, not the hashing, paced the
  body (the client's sending, the receiving, the writing and the hashing share the two cores);
  it finished ~1.6 ms after the body's last byte, and ~0.8 ms passed from there to the next
  `PATCH` reaching the upload code. The hashing thread began ~470 µs into the request, after
  the writer's; started before it, it began after ~30 µs but then waited that much longer for
  blocks (~1.7 ms), and the `PATCH`es took as long (7.4 against 7.2 ms): not kept.
- **Hashing into the next `PATCH`.** In that timeline the hash's last ~1.6 ms and the ~0.8 ms
  before the next `PATCH` came one after the other, a core idle through each. Wharf now answers
  a `PATCH` once its bytes are written and its progress recorded, while its last blocks are
  still being hashed. The progress recorded holds the hash state the hasher had saved by then,
  at most a queue of blocks behind the length, and how many bytes it covers; the running
  hashing is kept with the session in memory, and the next `PATCH`'s hasher takes over from it.
  A session continued without it (after a restart) first hashes, from the staged file, the few
  blocks its saved state does not cover. With eight blocks queued the tail it hides is longer
  than with the four of the earlier attempt. Eight interleaved rounds against the previous
  version: chunked 256 MiB and 1 GiB 1,011 and 1,026 against 989 and 961 MiB/s (+2% and +7%,
  six rounds of eight won at each size), monolithic 1,262 and 1,264 against 1,285 and 1,262
  (unchanged: a monolithic push's request waits for its hash to commit the blob, as before).
  The bare endpoint now answers the same way, so that it stays the reference for what the
  machine allows.
- **Listings** cost a fifth of a manifest GET or less, though each is one indexed read of one
  repository's rows too, and a page of 1,000 tags came in below Distribution 2.8's rate. Three
  things made them slow, found with `perf` (the registry under wrk, 32 connections). Half the
  samples of a 1,000-tag page were thread wake-ups: sqlx hands rows from SQLite's thread to the
  request one at a time through a bounded channel, a wake-up per tag. A page is now one row,
  its names joined with newlines by the query (`group_concat`; neither tags nor repository
  names can hold a newline), whether the repository exists is answered by the same query, and
  the names stay one string through to the JSON, which is written from them directly (no
  `serde_json::Value` tree, no string per name). Then, for any page size, even `n=1`, the
  profile still held SQLite's parser and planner (`sqlite3RunParser`, `sqlite3Select`), which a
  manifest GET's did not: SQLite reads the value bound to `LIMIT $n` while planning, marks the
  statement as depending on it, and binding it again expires the prepared statement — every
  listing was parsed and planned anew despite sqlx's statement cache. Wharf now switches on
  SQLite's query planner stability guarantee on its connections (`SQLITE_DBCONFIG_ENABLE_QPSG`),
  under which plans never depend on bound values; its queries have one good plan whatever the
  values. Last, the aggregate's own `ORDER BY` sorted the names again in a temporary table;
  the subquery's order is already the index's, so the aggregate now keeps it and the code
  checks it (and sorts if a database ever did not keep it). Measured alternately with the
  previous binary on one data folder (wrk, 32 connections, 4 s each, two rounds, with other
  builds running on the machine): a 50-tag list went from 6,200–6,900 to 8,900–10,000
  requests/s and a catalog page of 100 from 9,300–13,900 to 12,300–14,600, while the manifest
  GET stayed at 15,000–16,000; these were before the last change, measured in the table above.
- **Pulls**: Distribution and nginx hand the file to the kernel with `sendfile`, so the server
  copies nothing; Wharf serves through hyper, which writes buffers, so it reads each chunk from
  the page cache (in place, on the async worker, with `preadv2(RWF_NOWAIT)`) and the kernel
  copies it again into the socket. With one stream on two cores, the client's copy keeps one
  core busy and Wharf's two copies the other, so Wharf's core is the limit where nginx's and
  Distribution's is the client's (read chunks of 64 KiB to 1 MiB made no difference above
  this machine's noise); with 32 streams the copies spread and Wharf leads clearly.
  Memory-mapping the file would save the first copy, but a blob file cut short or an I/O
  error would then kill the whole server with SIGBUS instead of failing one request, and
  Wharf does not make that trade.

### Wharf with `storage.fsync: true`

The table above runs Wharf with `storage.fsync: false`, because Distribution never fsyncs a blob.
Wharf's default flushes each blob to disk before committing it; this is what that costs:

{fsync}

## Machine

| | |
|---|---|
| CPU | {mach['cpu']} ({mach['cpu_features'] or 'no SHA-NI/AVX'}) |
| Cores | {mach['cores']} |
| Memory | {mach['memory_gib']} GiB |
| OS, kernel | {mach['os']}, Linux {mach['kernel']} |
| Work directory | {mach['work_fs']} (blobs to push, both registries' data, nginx's root) |
| Proactive page reclaim | {mach.get('page_reclaim', 'not recorded')}: every file is read again right before the step that reads it |
| Free memory returned to the host | {mach.get('host_memory', 'not recorded')} |
| Wharf | {v['wharf']} ({v['wharf_source']}) |
| Peer | {v['peer']} |
| nginx | {v['nginx']} |
| OpenSSL | {v['openssl']} |
| Clients | {v['wrk']}, {v['ab']}, {v['skopeo']}, {v['curl']}, Python {v['python']} |
| Other work during the runs | {other} of the machine's CPU time, run by run (other processes and kernel threads, writeback included) |

## Reproduce

From a clean checkout, on Debian 12 as root:

    bench/run                 # the whole benchmark: {len(d['runs'])} runs, ~{max(1, d['elapsed_s'] // 60)} min here
    bench/run --runs 9        # more runs
    bench/run --smoke         # under a minute: proves the harness works, writes to a temp dir
    WHARF_BIN=/path/to/wharf bench/run   # use that binary instead of building this checkout
    bench/profile.py          # perf and callgrind profiles of Wharf under the heaviest loads

`bench/run` installs what is missing with `apt-get` (`docker-registry`, `nginx-light`, `wrk`,
`apache2-utils`, `curl`, `skopeo`, `python3-matplotlib`; on a machine booted with systemd,
Debian also starts the packages' own nginx and registry services, which the benchmark does not
use), builds Wharf and the bare upload endpoint (`cargo build --release -p wharf -p
bare-upload`), runs the harness (`bench/harness.py`) with Debian's Python, and writes this
page, its chart and the raw figures. It needs about {disk} free under `/var/tmp` (or
`BENCH_WORK_DIR`, which should be on a disk, not tmpfs). Run it on a quiet machine: anything
else running shows up in the figures. Every process it starts listens on 127.0.0.1 only and is
stopped by its PID when it ends, however it ends.

## How it measures

**The servers.** Each run starts every server afresh, on a free `127.0.0.1` port with an empty
data directory in the work directory (one file system for the inputs and both registries), and
stops it at the end of the run. Runs alternate which registry goes first. Settings:

- Wharf: `storage.fsync: false` (see above), `log.level: warn`; everything else at its default
  (drain `push_grace` 5 s, `timeout` 1 m; no authentication exists).
- Distribution: filesystem storage, `delete.enabled: true`, its in-memory blob descriptor cache
  left on (Debian's configuration has it; it helps Distribution's HEAD and GET), access log off
  (Wharf at `warn` logs no requests), no `auth` section. Distribution never fsyncs blob data.
- Both use every core (Tokio's and Go's defaults: {mach['cores']} threads) and stream blobs from
  files; neither redirects.

**Pushes.** A fresh random blob per push (from `/dev/urandom`, so nothing is deduplicated), to a
fresh repository. *Monolithic*: `POST /v2/<repo>/blobs/uploads/`, then one `PUT <location>&digest=`
with the whole blob (Distribution 2.8 does not take the content on the `POST`). *Chunked*: `POST`,
a `PATCH` per {size_label(plan['chunk'])} with its `Content-Range`, then `PUT ?digest=`. The figure
is the blob's size over the whole sequence's wall time. Every push starts with `sync`, so that
no earlier write's writeback runs during it (or makes the kernel throttle it), and with a read
of the blob to push, so that the client sends it from the page cache, not the disk. The client
(`bench/registry_client.py`) keeps one connection per push and sends bodies with `sendfile(2)`
from the page cache, so it costs little CPU and the same on both sides.

**Pulls.** `bench/pull_load.py` fetching `GET /v2/<repo>/blobs/<digest>` of a
{size_label(plan['pull_size'])} blob over and over for {plan['pull_seconds']} s, on 1 and on {n}
keep-alive connections, after one untimed pull that brings the server's copy into the page
cache; the figure counts every body byte read. It receives bodies with
`recv_into` a 1 MiB buffer and parses only the headers: wrk, which reads 8 KiB at a time and
parses every body byte, topped out at the same ~2 GiB/s against nginx, Distribution and Wharf
alike, so it measured itself. nginx serves the same content from the same disk, with
`sendfile on` and with `sendfile off`, measured the same way.

**Small requests.** A small image with {plan['tags']} tags; {n} keep-alive connections for
{plan['small_seconds']} s each on `GET /v2/<repo>/manifests/<tag>` (with an OCI `Accept`) and
`GET /v2/<repo>/tags/list` with `wrk`, and on `HEAD /v2/<repo>/blobs/<digest>` with ApacheBench
(`ab -i -k`), because wrk 4.1 cannot do HEAD (it waits for the body the `Content-Length`
announces). Requests per second and p99 latency; a non-2xx answer or a socket error counts as
a failed request. (Profiled with `perf` on this machine, Distribution 2.8 spends more than half
of its CPU time on a manifest GET compiling regular expressions: it builds a new URL router for
every request, in `v2.NewURLBuilderFromString`. That is how 2.8.2 behaves, not a setting.)

**Memory.** The server's peak resident set size (`VmHWM` in `/proc/<pid>/status`, reset with
`echo 5 > /proc/<pid>/clear_refs` before the phase) during the largest monolithic push and during
the {n}-stream pull.

**skopeo.** A `dir:` image of {plan['skopeo_layers']} uncompressed tar layers of decreasing size
({size_label(plan['skopeo_bytes'])} in all), its config listing them in `rootfs.diff_ids`, and an OCI
manifest: `skopeo copy dir:… docker://…` to a fresh repository, then back to a fresh `dir:`. Each
skopeo runs with an empty blob-info cache of its own (a private tmpfs over `/var/lib/containers`),
so no run tries cross-repository mounts learnt from another.

**Read-only toggles (Wharf only).** *Nothing in flight*: `PUT /api/v1/state/holds/bench?wait=60s`
until it answers 200 with the registry read-only, then `DELETE`; the median of
{plan['idle_holds']}. *The drain*: {plan['drain_uploads']} pushes, each to its own repository as
docker and podman push: a layer of {size_label(plan['drain_upload_size'])}, `curl -T --limit-rate
{plan['drain_rate'] // MiB}M` into a session opened just before, then the config blob (a new
upload, opened during the drain), then the manifest by tag. Once the server counts the layers all
in flight and a quarter of each is sent, the hold is taken with `?wait=120s`. Read-only takes
effect when the last push's tagged manifest is in, so the second row says how long after that
answer the hold's answer came (it includes the two HTTP answers' own latency).
*Under load*: `wrk` with {n} connections getting a manifest by tag for {plan['toggle_seconds']} s
while {plan['toggles']} hold/release cycles (`PUT …?wait=10s`, `DELETE`) are spread evenly over it,
against the same load without toggles just before.

**Memory the host takes back.** On a virtual machine whose kernel reports free pages to the
host (virtio-balloon free page reporting), the host discards them, and the first write to such
a page afterwards stops the guest while the host backs it again: 2 to 8 µs per 4 KiB page on
the machine these figures come from, 0.5 s and more per GiB, as long as Wharf takes to receive
and hash that GiB. Every push fills the page cache from free pages, so each server paid it per
byte received, more or less from run to run as the host was busy; it narrowed the gap between
the registries and made it noisy (a 1 GiB chunked push went from 8 ms to 21 ms per `PATCH`
halfway through). A registry's own host keeps its memory, so a full run turns the reporting
off (`page_reporting_order` above the largest block), writes a third of the memory (at most
8 GiB) once so that the runs' page cache comes from pages the host already backs, and
restores the setting when it ends; the *Machine* table says what it found and did.

**Medians.** Each figure is the median of the runs' figures; ratios are of medians. Before each
run and each server, the harness waits (up to 10 minutes) for the machine to be idle, and it
records how much CPU time other processes took during the runs (in *Machine* above).
"""
    text += s3_text(d)
    md.write_text(text)


def s3_text(d: dict) -> str:
    """The S3 section: Wharf against the plain client on s3s-fs, and Wharf against
    Distribution's S3 driver (and the plain client) on moto."""
    if "s3" not in d["median"]:
        return ""
    ratio = lambda a, b: f"{a / b:.2f}×" if a and b else "—"  # noqa: E731
    plan = d["plan"]

    def rows(sizes: list, prefix: str, peer: bool) -> str:
        out = []
        for size in sizes:
            key, label = size_key(size), size_label(size)
            for what, metric, plain in [
                ("push, monolithic", "push_mono", "plain_push"),
                ("push, chunked", "push_chunked", "plain_push"),
                ("pull", "pull", "plain_pull"),
            ]:
                w = median(d, "s3", f"{prefix}wharf_{metric}_{key}")
                c = median(d, "s3", f"{prefix}{plain}_{key}")
                if peer:
                    p = median(d, "s3", f"{prefix}peer_{metric}_{key}")
                    out.append(f"| {what} {label} | {fmt(w)} | {fmt(p)} | {fmt(c)} | "
                               f"{ratio(w, p)} | {ratio(w, c)} |")
                else:
                    out.append(f"| {what} {label} | {fmt(w)} | {fmt(c)} | {ratio(w, c)} |")
        return "\n".join(out)

    sizes = plan.get("s3_sizes", [])
    moto_sizes = plan.get("moto_sizes", [])
    memory = median(d, "s3", "wharf_mem_push")
    largest = size_label(max(sizes)) if sizes else "?"
    return f"""
## Blobs in S3

Wharf with `storage.backend: s3` (8 MiB parts), on two S3 servers on loopback, each fresh for
each registry and client. Medians, MiB/s. The plain client is boto3 (a multipart upload of
8 MiB parts sent one at a time, then a download): the S3 server's own speed, the limit.

**On s3s-fs** (a release build; signatures checked). Target: pushes at least 80% of the plain
client. Distribution cannot run here: its S3 driver lists multipart uploads before it
completes a push, which s3s-fs 0.14 answers with 501.

| Blob | Wharf ↑ | Plain client ↑ | Wharf / plain client |
|---|---|---|---|
{rows(sizes, "", False)}

Wharf's peak memory (RSS) during the {largest} monolithic push on S3: {fmt(memory)} MiB
(target: at most 64 MiB).

**On moto** (moto's S3 server, in Python, objects in memory), where Distribution's S3 driver
(8 MiB chunks, pulls served through it) runs. Target: pushes at least 2× the peer. moto is the
limit of everything here; the ratios say what each registry asks of the store (Distribution
copies a finished blob to its final key inside the store; Wharf completes the multipart upload
at it).

| Blob | Wharf ↑ | Peer ↑ | Plain client ↑ | Wharf / peer | Wharf / plain client |
|---|---|---|---|---|---|
{rows(moto_sizes, "moto_", True)}
"""
