#!/usr/bin/env python3
"""bench-table.py — the docs' benchmark tables, made from the benchmarks' JSON, never pasted.

Usage: bench-table.py RESULTS.json                 print the Markdown table
       bench-table.py RESULTS.json --update DOC.md  replace the table between DOC's markers
       bench-table.py RESULTS.json --check DOC.md   exit 1 when DOC's table is not this one

RESULTS.json is what `hetmem_bench_preload --json FILE` writes (schema hetmem.bench.preload/1;
markers in DOC `<!-- bench-preload: begin -->` and `<!-- bench-preload: end -->`) or
`hetmem_bench_tiering --json FILE` (schema hetmem.bench.tiering/1; markers `bench-tiering`) or
`hetmem_bench_alloc --json FILE` (schema hetmem.bench.alloc/1; markers `bench-alloc`).
"""
import json
import os
import sys

MARKERS = {"hetmem.bench.preload/1": "bench-preload", "hetmem.bench.tiering/1": "bench-tiering",
           "hetmem.bench.alloc/1": "bench-alloc"}


def cell(r):
    if r is None:
        return "failed"
    return f"{r['seconds']:.3f} s {r['max_rss_mib']:.1f}M"


def ratio(a, b, key):
    if a is None or b is None or not b[key]:
        return "-"
    return f"{a[key] / b[key]:.2f}x"


def tiering_table(data):
    head = ["source", "program speed", "engine CPU (of one core)", "of it reading the source", "kdamond",
            "hot set found", "window", "write fault", "chunks per interval"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in data["modes"]:
        if "unavailable" in m:
            lines.append(f"| {m['name']} | not here: {m['unavailable']} |" + " |" * (len(head) - 2))
            continue
        if m["name"] == "none":
            lines.append(f"| none | {m['updates_per_second'] / 1e6:.1f} M updates/s |" + " — |" * (len(head) - 2))
            continue
        fault = f"{m['write_fault_us']:.1f} µs" if m.get("write_fault_us", 0) > 0 else "—"
        chunks = str(m["chunks_per_interval"]) if m.get("chunks_per_interval", 0) > 0 else "—"
        window = f"{m['window_ms']:.0f} ms" if m.get("window_ms", 0) > 0 else "—"
        lines.append(f"| {m['name']} | {m['speed_vs_none']:.2f}x | {m['engine_cpu_pct']:.2f}% | "
                     f"{m['observing_pct']:.2f}% | {m['kdamond_pct']:.2f}% | "
                     f"{m['hot_mib']:.0f} of {data['hot_mib']:.0f} MiB | {window} | {fault} | {chunks} |")
    t = data["targets"]
    yes = {True: "met", False: "**not met**"}
    lines.append("")
    lines.append(f"GUPS on one thread, {data['table_mib']:.0f} MiB table, {data['hot_mib']:.0f} MiB hot set with "
                 f"{data['hot_share'] * 100:.0f}% of the updates; {data['tiers']}. Targets: program speed 0.9x "
                 f"beside every source {yes[t['speed_0_9x']]}; engine under 5% of a core {yes[t['cpu_under_5pct']]}; "
                 f"hot set found by every source {yes[t['hot_set_found']]}.")
    lines.append("")
    lines.append(f"Medians of {data['reps']} interleaved round(s) of {data['seconds']:g} s per mode; "
                 "made by `scripts/bench-table.py` from the JSON.")
    return "\n".join(lines) + "\n"


def size_name(n):
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def alloc_table(data):
    pairs = data["pairs"]
    names = list(pairs[0]["ns_per_pair"].keys()) if pairs else []
    lines = ["| pair, threads | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    small_met = large_met = True
    for p in pairs:
        ns = p["ns_per_pair"]
        je = ns.get("jemalloc")
        row = [f"{size_name(p['bytes'])}, {p['threads']}"]
        for n in names:
            v = ns.get(n)
            if v is None or not je:
                row.append("-")
            elif n == "jemalloc":
                row.append(f"1.00x ({v:.1f} ns)")
            else:
                row.append(f"{v / je:.2f}x")
        h = ns.get("hetmem")
        if h and je:
            if p["bytes"] <= 4096 and h / je > 1.5:
                small_met = False
            if p["bytes"] > 4096 and h / je > 1.2:
                large_met = False
        lines.append("| " + " | ".join(row) + " |")
    yes = {True: "met", False: "**not met**"}
    peaks = data.get("peak_kib_above_idle", {})
    lines.append("")
    lines.append(f"Targets: hetmem within 1.5x jemalloc for the 64 B and 4 KiB pairs {yes[small_met]}; within 1.2x "
                 f"for the 1 MiB pair {yes[large_met]}.")
    if peaks:
        parts = [f"{k} {v / 1024:.0f} MiB" if v is not None else f"{k} failed" for k, v in peaks.items()]
        extra = ""
        if peaks.get("hetmem") and peaks.get("jemalloc"):
            r = peaks["hetmem"] / peaks["jemalloc"]
            extra = f" (hetmem {r:.2f}x jemalloc's, target 1.1x {yes[r <= 1.1]})"
        c = data["churn"]
        lines.append("")
        lines.append(f"Peak resident memory of a churn of {c['live_slots']} live objects and {c['operations']} "
                     f"operations, above an idle child: {', '.join(parts)}{extra}.")
    reps = pairs[0].get("repetitions") if pairs else None
    lines.append("")
    lines.append(f"Medians of {reps} interleaved repetition(s) per cell{' (--quick)' if data.get('quick') else ''}; "
                 "made by `scripts/bench-table.py` from the JSON.")
    return "\n".join(lines) + "\n"


def table(data):
    schema = data.get("schema")
    if schema == "hetmem.bench.tiering/1":
        return tiering_table(data)
    if schema == "hetmem.bench.alloc/1":
        return alloc_table(data)
    if schema != "hetmem.bench.preload/1":
        sys.exit(f"bench-table.py: not a file of {', '.join(MARKERS)} (schema {schema!r})")
    configs = list(data["workloads"][0]["results"].keys())
    baseline = "hetmem-baseline" in configs
    shown = [c for c in configs if c != "hetmem-baseline"]
    head = ["workload"] + shown + ["hetmem / jemalloc (time, RSS)", "memtier / hetmem"]
    if baseline:
        head.append("hetmem / baseline build (time, RSS)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in data["workloads"]:
        r = w["results"]
        h, j, m = r.get("hetmem"), r.get("jemalloc"), r.get("memtier")
        row = [w["name"]] + [cell(r.get(c)) for c in shown]
        row.append(f"{ratio(h, j, 'seconds')} {ratio(h, j, 'max_rss_mib')}")
        row.append(ratio(m, h, "seconds"))
        if baseline:
            b = r.get("hetmem-baseline")
            row.append(f"{ratio(h, b, 'seconds')} {ratio(h, b, 'max_rss_mib')}")
        lines.append("| " + " | ".join(row) + " |")
    startup = data.get("startup_ms", {})
    if startup:
        parts = [f"{k} {v:.2f} ms" if v is not None else f"{k} failed" for k, v in startup.items()]
        extra = ""
        if startup.get("hetmem") is not None and startup.get("jemalloc") is not None:
            extra = f" (hetmem {startup['hetmem'] - startup['jemalloc']:+.2f} ms against jemalloc)"
        lines.append("")
        lines.append(f"Start-up on `/bin/true`: {', '.join(parts)}{extra}.")
    for tree, runs in data.get("startup_tree_ms", {}).items():
        parts = [f"{k} {v:.2f} ms" if v is not None else f"{k} failed" for k, v in runs.items()]
        extra = ""
        if runs.get("hetmem") is not None and runs.get("jemalloc") is not None:
            extra = f" (hetmem {runs['hetmem'] - runs['jemalloc']:+.2f} ms against jemalloc)"
        lines.append("")
        lines.append(f"Start-up with `HETMEM_SYSFS_ROOT` on the tree `{os.path.basename(tree)}`: "
                     f"{', '.join(parts)}{extra}.")
    reps = data.get("reps")
    lines.append("")
    lines.append(f"Medians of {reps} interleaved run(s) per cell{' (--quick)' if data.get('quick') else ''}; "
                 "made by `scripts/bench-table.py` from the JSON.")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] not in ("--update", "--check")):
        sys.exit(__doc__)
    with open(argv[1]) as f:
        data = json.load(f)
    text = table(data)
    name = MARKERS[data["schema"]]
    BEGIN, END = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    if len(argv) == 2:
        sys.stdout.write(text)
        return 0
    with open(argv[3]) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        sys.exit(f"bench-table.py: {argv[3]} has no {BEGIN} ... {END} markers")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + "\n" + text + END + tail
    if argv[2] == "--check":
        if new != doc:
            print(f"bench-table.py: the table in {argv[3]} is not the one {argv[1]} makes; "
                  f"run scripts/bench-table.py {argv[1]} --update {argv[3]}")
            return 1
        print(f"ok   the table in {argv[3]} is made from {argv[1]}")
        return 0
    with open(argv[3], "w") as f:
        f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
