#!/usr/bin/env python3
"""Draws ci/bench's transport results as PNG charts next to the JSON.

Usage: ci/bench-charts.py BENCH_DIR

Reads BENCH_DIR/transport.json (every run of every round, as ci/bench
collects it; the per-run files in BENCH_DIR/transport_runs/ when
transport.json is missing) and writes, in BENCH_DIR:

  throughput.png  one panel per workload, a bar per program (moonpool first,
                  then raw libuv, Cap'n Proto RPC, gRPC): req/s for small
                  payloads, MB/s for 64 KiB and larger, items/s (or MB/s)
                  for the stream workloads; each bar the median of the
                  rounds, each baseline's label with moonpool's ratio to it.
  latency.png     one panel per workload: p50, p99 and p99.9 latency (the
                  gap between items for streams), a bar per program, log
                  scale (the percentiles span orders of magnitude).

What it is not: a judge. ci/bench prints the targets; this only draws. It
charts what is there: a workload that did not run has no panel, a program
that did not run or failed in any round has no bar (with a note on stdout
and under the panel). It exits 0 unless BENCH_DIR has no transport results
at all or matplotlib is missing (exit 1, with the reason). Agg backend: no
display needed.
"""
import collections
import glob
import json
import os
import re
import sys

PEER_NAMES = {
    "moonpool": "moonpool",
    "raw_uv": "raw libuv",
    "capnp_rpc": "Cap'n Proto RPC",
    "grpc": "gRPC",
}
PEER_COLORS = {
    "moonpool": "#1f77b4",
    "raw_uv": "#7f7f7f",
    "capnp_rpc": "#ff7f0e",
    "grpc": "#2ca02c",
    "moonpool exactly-once": "#aec7e8",
}
EXTRA_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
PERCENTILES = [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")]


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] +
                                                  values[mid]) / 2


def load(bench_dir):
    """(context, [run, ...]) from transport.json or transport_runs/."""
    path = os.path.join(bench_dir, "transport.json")
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
        return data.get("context", {}), data.get("results", [])
    runs = []
    for p in sorted(glob.glob(os.path.join(bench_dir, "transport_runs",
                                           "*.json"))):
        try:
            with open(p) as f:
                runs.append(json.load(f))
        except (OSError, ValueError):
            # A run that printed no JSON: ci/bench has already said so.
            name = os.path.basename(p).split(".")
            if len(name) >= 2:
                runs.append({"workload": name[0], "peer": name[1],
                             "failed": True})
    return {}, runs


def payload_bytes(workload):
    """The payload (item) size a workload's name gives, or None (100conn)."""
    m = re.match(r"^(?:stream_)?(\d+)(B|KiB|MiB)_", workload)
    if not m:
        return None
    return int(m.group(1)) * {"B": 1, "KiB": 1024, "MiB": 1024 * 1024}[
        m.group(2)]


def throughput_of(workload, r):
    """(value, unit) to chart for one result."""
    stream = workload.startswith("stream_")
    size = payload_bytes(workload)
    if size is not None and size >= 64 * 1024:
        return r["bytes_per_second"] / 1e6, "MB/s"
    return r["requests_per_second"], "items/s" if stream else "req/s"


def short(value):
    for bound, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= bound:
            return f"{value / bound:.3g}{suffix}"
    return f"{value:.3g}"


def ratio_text(x):
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.2g}x"


def summarise(runs):
    """Ordered {workload: {peer: median figures or None (failed)}}."""
    grouped = collections.OrderedDict()
    for r in runs:
        w, p = r.get("workload"), r.get("peer")
        if w is None or p is None:
            continue
        grouped.setdefault(w, collections.OrderedDict()).setdefault(
            p, []).append(r)
    # An exactly-once workload (64B_x256_eo, moonpool alone) joins its plain
    # workload's panel as one more program, beside what it is compared with.
    for w in [w for w in grouped if w.endswith("_eo") and w[:-3] in grouped]:
        for p, rs in grouped.pop(w).items():
            grouped[w[:-3]][f"{p} exactly-once"] = rs
    out = collections.OrderedDict()
    for w, peers in grouped.items():
        out[w] = collections.OrderedDict()
        # moonpool first, then the known peers in their usual order, then
        # anything else (a new program or variant) in the order it ran.
        order = [p for p in PEER_NAMES if p in peers]
        order[1:1] = [p for p in peers if p.startswith("moonpool ")]
        order += [p for p in peers if p not in order]
        for p in order:
            rs = peers[p]
            if any(r.get("failed") for r in rs):
                out[w][p] = None
                continue
            try:
                out[w][p] = {
                    "requests_per_second": median(
                        [r["requests_per_second"] for r in rs]),
                    "bytes_per_second": median(
                        [r["bytes_per_second"] for r in rs]),
                    "latency_us": {
                        q: median([r["latency_us"][q] for r in rs])
                        for q, _ in PERCENTILES
                    },
                    "rounds": len(rs),
                }
            except (KeyError, TypeError):
                out[w][p] = None
    return out


def tick_name(peer):
    """A program's name on two short lines at most, for crowded axes."""
    if peer.startswith("moonpool "):
        return "moonpool\n" + peer[len("moonpool "):]
    return {"capnp_rpc": "Cap'n Proto\nRPC"}.get(peer,
                                                 PEER_NAMES.get(peer, peer))


def colors_for(peers):
    extra = iter(EXTRA_COLORS * 4)
    return {p: PEER_COLORS.get(p) or next(extra) for p in peers}


def grid(n):
    cols = 1 if n == 1 else 2 if n <= 4 else 3
    rows = (n + cols - 1) // cols
    return rows, cols


def title_of(context, what):
    bits = []
    if context.get("rounds"):
        rounds = context["rounds"]
        bits.append(f"median of {rounds} round{'s' if rounds > 1 else ''}"
                    f" of {context.get('duration_ms', '?')} ms")
    if context.get("commit"):
        bits.append(f"commit {context['commit']}")
    if context.get("date"):
        bits.append(context["date"])
    if context.get("cpus"):
        bits.append(f"{context['cpus']} CPUs, load"
                    f" {context.get('load_average_before', '?')}")
    return what + ("\n" + ", ".join(bits) if bits else "")


def draw(summary, context, bench_dir, plt):
    from matplotlib.ticker import FuncFormatter
    workloads = list(summary)
    all_peers = []
    for w in workloads:
        all_peers += [p for p in summary[w] if p not in all_peers]
    colors = colors_for(all_peers)
    rows, cols = grid(len(workloads))
    top_margin = 1 - 0.4 / (3.8 * rows)  # the two title lines
    notes = []
    written = []

    # Throughput: one panel per workload (each its own linear scale, so a
    # 64 B panel's 700k req/s and a 1 MiB panel's 1,200 MB/s both read).
    fig, axes = plt.subplots(rows, cols, figsize=(max(9.0, 5.6 * cols), 3.8 * rows),
                             squeeze=False)
    for i, w in enumerate(workloads):
        ax = axes[i // cols][i % cols]
        present = [(p, r) for p, r in summary[w].items() if r is not None]
        missing = [p for p, r in summary[w].items() if r is None]
        unit = "req/s"
        values = []
        for _, r in present:
            v, unit = throughput_of(w, r)
            values.append(v)
        mp = summary[w].get("moonpool")
        mp_value = throughput_of(w, mp)[0] if mp else None
        labels = []
        for (p, _), v in zip(present, values):
            name = tick_name(p)
            if mp_value is not None and v and p.startswith("moonpool "):
                name += f"\n{ratio_text(v / mp_value)} of plain"
            elif p != "moonpool" and mp_value is not None and v:
                name += f"\nmoonpool {ratio_text(mp_value / v)}"
            labels.append(name)
        xs = range(len(present))
        bars = ax.bar(xs, values, width=0.7,
                      color=[colors[p] for p, _ in present])
        ax.set_xlim(-0.6, max(len(present), 3) - 0.4)  # one bar stays slim
        for bar, v in zip(bars, values):
            ax.annotate(short(v), (bar.get_x() + bar.get_width() / 2,
                                   bar.get_height()),
                        ha="center", va="bottom", fontsize=9)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7.5)
        ax.set_ylabel(unit)
        ax.set_ylim(0, max(values) * 1.18 if values else 1)
        ax.set_title(w, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.yaxis.set_major_formatter(
            FuncFormatter(lambda v, _: short(v) if v else "0"))
        if missing:
            text = "no figure (failed): " + ", ".join(
                PEER_NAMES.get(p, p) for p in missing)
            ax.text(0.99, 0.97, text, transform=ax.transAxes, ha="right",
                    va="top", fontsize=7, color="#b00000")
            notes.append(f"{w}: {text}")
        if not present:
            ax.text(0.5, 0.5, "no program succeeded", ha="center",
                    transform=ax.transAxes)
    for j in range(len(workloads), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(title_of(context, "Throughput per workload (higher is"
                          " better)"), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, top_margin))
    path = os.path.join(bench_dir, "throughput.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    # Latency percentiles: groups p50 / p99 / p99.9, a bar per program.
    fig, axes = plt.subplots(rows, cols, figsize=(max(9.0, 5.6 * cols), 3.8 * rows),
                             squeeze=False)
    for i, w in enumerate(workloads):
        ax = axes[i // cols][i % cols]
        present = [(p, r) for p, r in summary[w].items() if r is not None]
        n = max(len(present), 1)
        width = 0.8 / n
        for k, (p, r) in enumerate(present):
            ys = [r["latency_us"][q] for q, _ in PERCENTILES]
            xs = [g + (k - (n - 1) / 2) * width for g in range(len(ys))]
            ax.bar(xs, ys, width=width, color=colors[p],
                   label=PEER_NAMES.get(p, p))
            if n <= 5:
                for x, y in zip(xs, ys):
                    ax.annotate(short(y), (x, y), ha="center", va="bottom",
                                fontsize=7, rotation=90 if n > 2 else 0)
        ax.set_xticks(range(len(PERCENTILES)))
        ax.set_xticklabels([name for _, name in PERCENTILES])
        stream = w.startswith("stream_")
        ax.set_ylabel("gap between items, us" if stream else "latency, us")
        if present and all(r["latency_us"][q] > 0 for _, r in present
                           for q, _ in PERCENTILES):
            ax.set_yscale("log")
            top = max(r["latency_us"][q] for _, r in present
                      for q, _ in PERCENTILES)
            ax.set_ylim(top=top * 6)  # room for the labels on a log scale
        ax.set_title(w + (" (per item)" if stream else ""), fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left")
        missing = [p for p, r in summary[w].items() if r is None]
        if missing:
            ax.text(0.99, 0.97, "no figure (failed): " + ", ".join(
                PEER_NAMES.get(p, p) for p in missing),
                    transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    color="#b00000")
    for j in range(len(workloads), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(title_of(context, "Latency percentiles, client side, us,"
                          " log scale (lower is better)"), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, top_margin))
    path = os.path.join(bench_dir, "latency.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)
    return written, notes


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    bench_dir = argv[1]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("bench-charts: no matplotlib (Debian: python3-matplotlib,"
                 " installed by ci/install-deps.sh --bench)")
    context, runs = load(bench_dir)
    summary = summarise(runs)
    if not summary:
        sys.exit(f"bench-charts: no transport results in {bench_dir}")
    # Which known baselines did not run at all (BENCH_WORKLOADS, a program
    # not built): say so rather than leave the reader guessing.
    ran = {p for peers in summary.values() for p in peers}
    for p in PEER_NAMES:
        if p not in ran:
            print(f"bench-charts: note: no {PEER_NAMES[p]} results; its bars"
                  " are left out")
    written, notes = draw(summary, context, bench_dir, plt)
    for note in notes:
        print(f"bench-charts: note: {note}")
    for path in written:
        print(f"bench-charts: wrote {path}")


if __name__ == "__main__":
    main(sys.argv)
