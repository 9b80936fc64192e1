#!/usr/bin/env python3
"""Summarize a bench/compare.sh results directory: medians per contender, ratios to Nginx, and
the issue's targets. usage: bench/summarize.py RESULTS_DIR"""

import glob
import json
import os
import re
import statistics
import sys

CONTENDERS = ["direct", "nginx", "relay"]


def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


def get(obj, *keys):
    for k in keys:
        if not isinstance(obj, dict) or obj.get(k) is None:
            return None
        obj = obj[k]
    return obj


# metric name -> (phase file suffix, extractor, unit, lower is better)
METRICS = [
    ("paced rtt p50 (ms)", "paced", lambda j: get(j, "rtt_ms", "p50"), True),
    ("paced rtt p99 (ms)", "paced", lambda j: get(j, "rtt_ms", "p99"), True),
    ("paced CPU s / 100k round trips", "paced", lambda j: get(j, "proxy", "cpu_s_per_100k"), True),
    ("paced 1 KiB rtt p50 (ms)", "paced1k", lambda j: get(j, "rtt_ms", "p50"), True),
    ("paced 1 KiB rtt p99 (ms)", "paced1k", lambda j: get(j, "rtt_ms", "p99"), True),
    ("paced 1 KiB CPU s / 100k round trips", "paced1k",
     lambda j: get(j, "proxy", "cpu_s_per_100k"), True),
    ("flat-out 300 B msg/s", "flat300", lambda j: get(j, "messages_per_sec"), False),
    ("flat-out 300 B CPU s / 100k", "flat300", lambda j: get(j, "proxy", "cpu_s_per_100k"), True),
    ("flat-out 64 KiB msg/s", "flat64k", lambda j: get(j, "messages_per_sec"), False),
    ("flat-out 64 KiB MB/s", "flat64k", lambda j: get(j, "mb_per_sec"), False),
    ("flat-out 64 KiB CPU s / 100k", "flat64k", lambda j: get(j, "proxy", "cpu_s_per_100k"), True),
    ("idle RSS per session (KiB)", "idle", lambda j: get(j, "proxy", "rss_per_session_kb"), True),
    ("idle setup p50 (ms)", "idle", lambda j: get(j, "setup_ms", "p50"), True),
]


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def main():
    d = sys.argv[1]
    values = {}  # (metric, contender) -> [per-round values]
    failures = []
    for path in sorted(glob.glob(os.path.join(d, "r*-*-*.json"))):
        m = re.match(r"r(\d+)-(\w+)-(\w+)\.json", os.path.basename(path))
        if not m:
            continue
        _, who, phase = m.groups()
        j = load(path)
        if j is None:
            failures.append(os.path.basename(path))
            continue
        if j.get("sessions_failed") or j.get("lost"):
            failures.append(
                f"{os.path.basename(path)}: {j.get('sessions_failed')} sessions failed, "
                f"{j.get('lost')} lost"
            )
        for name, ph, ex, _ in METRICS:
            if ph == phase and ex(j) is not None:
                values.setdefault((name, who), []).append(ex(j))

    med = {k: statistics.median(v) for k, v in values.items()}
    print("| metric (median of rounds) | direct | nginx | relay | relay / nginx |")
    print("|---|---:|---:|---:|---:|")
    for name, _, _, _ in METRICS:
        row = [fmt(med.get((name, c))) for c in CONTENDERS]
        n, r = med.get((name, "nginx")), med.get((name, "relay"))
        ratio = f"{r / n:.2f}x" if n and r is not None else "-"
        print(f"| {name} | " + " | ".join(row) + f" | {ratio} |")
    print()
    print("Per-round values (relay / nginx):")
    for name, _, _, _ in METRICS:
        print(
            f"- {name}: nginx {[fmt(x) for x in values.get((name, 'nginx'), [])]}, "
            f"relay {[fmt(x) for x in values.get((name, 'relay'), [])]}"
        )
    print()

    def ratio(name):
        n, r = med.get((name, "nginx")), med.get((name, "relay"))
        return r / n if n and r is not None else None

    # Memory per stalled client: the highest sample less the proxy's RSS before the sessions.
    stalled = {}
    for who in ["relay", "nginx"]:
        slow = load(os.path.join(d, f"slow-{who}.json"))
        base = get(slow, "proxy", "rss_base_kb") if slow else None
        samples = (slow or {}).get("rss_samples_kb") or []
        if base is not None and samples and slow.get("sessions_ok"):
            stalled[who] = (max(samples) - base) / slow["sessions_ok"]
    stalled_ratio = (stalled["relay"] / stalled["nginx"]
                     if stalled.get("nginx") and "relay" in stalled else None)

    # Issue 15's goals (ratios to Nginx in the same run).
    targets = [
        ("CPU per paced 1 KiB message <= 1.0x Nginx",
         ratio("paced 1 KiB CPU s / 100k round trips"), lambda x: x <= 1.0),
        ("CPU per paced 6.4 KB message <= 1.0x Nginx",
         ratio("paced CPU s / 100k round trips"), lambda x: x <= 1.0),
        ("paced 1 KiB round trip p99 <= 1.0x Nginx", ratio("paced 1 KiB rtt p99 (ms)"),
         lambda x: x <= 1.0),
        ("paced 1 KiB round trip p50 <= 1.2x Nginx", ratio("paced 1 KiB rtt p50 (ms)"),
         lambda x: x <= 1.2),
        ("flat-out msg/s with 300 B >= 1x Nginx", ratio("flat-out 300 B msg/s"),
         lambda x: x >= 1.0),
        ("flat-out msg/s with 64 KiB >= 1x Nginx", ratio("flat-out 64 KiB msg/s"),
         lambda x: x >= 1.0),
        ("idle RSS per session <= 1.0x Nginx", ratio("idle RSS per session (KiB)"),
         lambda x: x <= 1.0),
        ("memory per stalled client <= 2.0x Nginx (--slow)", stalled_ratio,
         lambda x: x <= 2.0),
    ]
    print("| target | relay / nginx | |")
    print("|---|---:|---|")
    for label, x, ok in targets:
        verdict = "-" if x is None else ("met" if ok(x) else "NOT met")
        print(f"| {label} | {'-' if x is None else f'{x:.2f}x'} | {verdict} |")
    print()

    soak = []
    for path in sorted(glob.glob(os.path.join(d, "soak-*-*.json")),
                       key=lambda p: [int(t) if t.isdigit() else t
                                      for t in re.split(r"(\d+)", p)]):
        j = load(path)
        if j:
            rss = get(j, "proxy", "rss_after_kb") or get(j, "proxy", "rss_held_kb")
            soak.append(f"{os.path.basename(path)[:-5]}: {rss} kB")
    if soak:
        print("Soak (relay RSS after each step): " + "; ".join(soak))
        print()
    scale = load(os.path.join(d, "scale.json"))
    if scale:
        print(
            f"Scale: {scale.get('sessions_ok')} of {scale.get('sessions')} sessions opened "
            f"(setup p50 {get(scale, 'setup_ms', 'p50')} ms, p99 {get(scale, 'setup_ms', 'p99')} ms, "
            f"all in {scale.get('setup_wall_s')} s), {scale.get('open_at_end')} open after the hold, "
            f"{scale.get('probe_ok')} echoed their probe (p99 {get(scale, 'probe_rtt_ms', 'p99')} ms); "
            f"relay RSS {get(scale, 'proxy', 'rss_base_kb')} -> {get(scale, 'proxy', 'rss_held_kb')} kB "
            f"({get(scale, 'proxy', 'rss_per_session_kb')} kB per session)"
        )
        try:
            with open(os.path.join(d, "scale-health.txt")) as f:
                print(f.read().strip())
        except OSError:
            pass
        print()
    for who in ["relay", "nginx"]:
        slow = load(os.path.join(d, f"slow-{who}.json"))
        if slow:
            print(
                f"Slow consumers via {who}: {slow.get('sessions_ok')} sessions not reading; "
                f"RSS {get(slow, 'proxy', 'rss_base_kb')} kB before, samples (kB, 1/s) "
                f"{slow.get('rss_samples_kb')}"
            )
            if who in stalled:
                print(f"  {stalled[who]:.1f} kB per stalled client")
    if failures:
        print()
        print("Runs with failures: " + "; ".join(failures))


if __name__ == "__main__":
    main()
