# Copyright (c) 2026, kimi.vllm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet benchmark report: what every node's vllm_bench returned, gathered into one summary and its plots.

Runs on the controller (playbooks/benchmark.yml). ``bench_fleet`` builds the fleet document (``fleet.json``) from
the registered results; the ``bench_svg_*`` filters draw its plots as inline SVG for ``report.html``. The plots are
drawn here by hand: four simple chart types do not justify a plotting library on the controller, and inline SVG
keeps the report one self-contained file that any browser opens.
"""

from __future__ import annotations

import html
import math

from ansible.errors import AnsibleFilterError

# Metrics of the fleet table, in order: (key, label, unit, decimals).
TABLE_METRICS = (
    ("output_throughput", "Output", "tok/s", 1),
    ("total_token_throughput", "Total", "tok/s", 1),
    ("mean_ttft_ms", "TTFT mean", "ms", 1),
    ("p99_ttft_ms", "TTFT p99", "ms", 1),
    ("mean_tpot_ms", "TPOT mean", "ms", 2),
    ("p99_tpot_ms", "TPOT p99", "ms", 2),
    ("mean_itl_ms", "ITL mean", "ms", 2),
    ("p99_itl_ms", "ITL p99", "ms", 2),
)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
FONT = "font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif"


def _node(host: str, result) -> dict:
    """One node's entry from its registered vllm_bench result (or the lack of one)."""
    if not isinstance(result, dict) or not result:
        return {"host": host, "ok": False, "passed": False, "msg": "no benchmark result (host unreachable or skipped)"}
    metrics = result.get("metrics") or {}
    ran = bool(metrics)
    return {
        "host": host,
        "ok": ran,
        "passed": bool(result.get("passed")) and ran and not result.get("failed_metrics"),
        "msg": result.get("msg", ""),
        "simulated": bool(result.get("simulated")),
        "metrics": metrics,
        "baseline_ratio": result.get("baseline_ratio") or {},
        "failed_metrics": result.get("failed_metrics") or [],
        "checks": result.get("checks") or [],
        "distributions": result.get("distributions") or {},
        "sweep": result.get("sweep") or [],
        "slo_max_concurrency": result.get("slo_max_concurrency"),
        "server": result.get("server") or {},
        "dataset": result.get("dataset") or {},
        "workload": result.get("workload") or {},
        "baseline": result.get("baseline") or {},
    }


def _stats(values) -> dict:
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return {"min": None, "max": None, "mean": None, "total": None}
    return {"min": min(values), "max": max(values), "mean": sum(values) / len(values), "total": sum(values)}


def bench_fleet(hosts, hostvars, var: str = "vllm_bench_result", generated: str = "") -> dict:
    """The fleet document: one entry per host, a summary, the baseline, and whether anything is simulated."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"bench_fleet expects a list of hosts, got {type(hosts).__name__}")
    nodes = []
    for host in hosts:
        try:
            result = hostvars[host].get(var)
        except (KeyError, AttributeError):
            result = None
        nodes.append(_node(str(host), result))
    ran = [n for n in nodes if n["ok"]]
    baseline = next((n["baseline"] for n in ran if n["baseline"].get("metrics")), None) or (
        ran[0]["baseline"] if ran else {}
    )
    summary = {
        "nodes": len(nodes),
        "measured": len(ran),
        "passed": sum(1 for n in nodes if n["passed"]),
        "failed": [n["host"] for n in nodes if not n["passed"]],
    }
    for key, _label, _unit, _dec in TABLE_METRICS:
        summary[key] = _stats([n["metrics"].get(key) for n in ran])
    return {
        "generated": generated,
        "simulated": any(n.get("simulated") for n in nodes),
        "definitions": "vllm bench serve 0.33.0 (TTFT to the first token event incl. reasoning; ITL per chunk)",
        "baseline": baseline,
        "workload": ran[0]["workload"] if ran else {},
        "summary": summary,
        "nodes": nodes,
    }


def bench_fleet_markdown_rows(fleet: dict) -> list:
    """Rows of the fleet table as lists of cells (verdict, then each metric with its ratio to the baseline)."""
    rows = []
    for n in fleet["nodes"]:
        if not n["ok"]:
            rows.append([n["host"], "NO RESULT", *["-"] * len(TABLE_METRICS), n["msg"]])
            continue
        cells = [n["host"], "pass" if n["passed"] else "FAIL"]
        for key, _label, _unit, dec in TABLE_METRICS:
            value = n["metrics"].get(key)
            ratio = n["baseline_ratio"].get(key)
            cell = "-" if value is None else f"{value:,.{dec}f}"
            if ratio is not None:
                cell += f" ({ratio:.2f}x)"
            cells.append(cell)
        cells.append(", ".join(n["failed_metrics"]) or "")
        rows.append(cells)
    return rows


def bench_table_metrics(_fleet=None) -> list:
    """The fleet table's metric columns: ``[key, label, unit, decimals]`` each."""
    return [list(m) for m in TABLE_METRICS]


# ---- SVG -------------------------------------------------------------------------------------------------------


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _ticks(top: float, count: int = 5) -> list:
    return [top * i / count for i in range(count + 1)]


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _frame(width, height, title, body, label) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_esc(label)}" style="{FONT};font-size:12px">'
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="600">{_esc(title)}</text>'
        f"{body}</svg>"
    )


def bench_svg_throughput(fleet: dict, metric: str = "output_throughput", title: str = "") -> str:
    """Bars of each node's ``metric`` with the baseline (and its tolerance limit) as lines."""
    nodes = [n for n in fleet["nodes"] if n["ok"] and isinstance(n["metrics"].get(metric), (int, float))]
    base = (fleet.get("baseline") or {}).get("metrics", {}).get(metric)
    check = next((c for n in nodes for c in n["checks"] if c["metric"] == metric), None)
    limit = check["limit"] if check else None
    title = title or f"{metric} per node" + (" (SIMULATED)" if fleet.get("simulated") else "")
    width, left, right, top, bottom = 760, 70, 20, 34, 60
    bar_w = max(8, min(60, (width - left - right) / max(len(nodes), 1) * 0.6))
    height = 320
    plot_h = height - top - bottom
    peak = max([n["metrics"][metric] for n in nodes] + [base or 0, limit or 0] + [1e-9])
    ymax = _nice_max(peak * 1.1)
    body = []
    for t in _ticks(ymax):
        y = top + plot_h - t / ymax * plot_h
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    step = (width - left - right) / max(len(nodes), 1)
    for i, n in enumerate(nodes):
        value = n["metrics"][metric]
        x = left + step * i + (step - bar_w) / 2
        h = value / ymax * plot_h
        color = "#2ca02c" if metric not in n["failed_metrics"] else "#d62728"
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'fill="{color}"><title>{_esc(n["host"])}: {value:,.1f}</title></rect>'
        )
        body.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 4:.1f}" text-anchor="middle">{_fmt(value)}</text>'
        )
        body.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16:.1f}" text-anchor="middle">{_esc(n["host"])}</text>'
        )
    # The baseline is labelled at the right end, the tolerance limit at the left, so close lines stay readable.
    for value, label, dash, x, anchor in (
        (base, "baseline", "", width - right - 4, "end"),
        (limit, "limit", "6 4", left + 4, "start"),
    ):
        if value:
            y = top + plot_h - value / ymax * plot_h
            body.append(
                f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#333" '
                f'stroke-dasharray="{dash}"/>'
                f'<text x="{x}" y="{y - 4:.1f}" text-anchor="{anchor}">{label} {_fmt(value)}</text>'
            )
    body.append(
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#333"/>'
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#333"/>'
    )
    if not nodes:
        body.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no measurement</text>')
    return _frame(width, height, title, "".join(body), title)


def _log_ticks(lo: float, hi: float) -> list:
    ticks = []
    e = math.floor(math.log10(lo))
    while 10**e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10**e
            if lo <= v <= hi:
                ticks.append(v)
        e += 1
    return ticks


def bench_svg_cdf(fleet: dict, key: str = "ttft_ms", title: str = "") -> str:
    """Each node's distribution of ``key`` (from its quantiles) as a cumulative curve on a log time axis."""
    series = [
        (n["host"], n["distributions"].get(key) or [])
        for n in fleet["nodes"]
        if n["ok"] and n["distributions"].get(key)
    ]
    title = title or f"{key} distribution" + (" (SIMULATED)" if fleet.get("simulated") else "")
    width, left, right, top, bottom = 760, 60, 150, 34, 46
    height = 320
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _h, q in series for _p, v in q if v > 0]
    body = []
    if not values:
        body.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no measurement</text>')
        return _frame(width, height, title, "".join(body), title)
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo * 10
    span = math.log10(hi) - math.log10(lo)

    def sx(v):
        return left + (math.log10(max(v, lo)) - math.log10(lo)) / span * plot_w

    def sy(p):
        return top + plot_h - p / 100 * plot_h

    for t in _log_ticks(lo, hi):
        x = sx(t)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eee"/>')
        body.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{_fmt(t)}</text>')
    for p in (0, 25, 50, 75, 90, 100):
        y = sy(p)
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{p}%</text>')
    for i, (host, quantiles) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{sx(v):.1f},{sy(p):.1f}" for p, v in quantiles)
        body.append(f'<polyline class="cdf" points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        ly = top + 14 + 16 * i
        body.append(
            f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="12" height="3" fill="{color}"/>'
            f'<text x="{left + plot_w + 30}" y="{ly - 4}">{_esc(host)}</text>'
        )
    body.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>'
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">{_esc(key)} (log scale)</text>'
    )
    return _frame(width, height, title, "".join(body), title)


def bench_svg_sweep(fleet: dict, latency: str = "p99_ttft_ms", title: str = "") -> str:
    """Throughput against ``latency`` for each node's sweep, points labelled with their concurrency."""
    series = [(n["host"], n["sweep"], n.get("slo_max_concurrency")) for n in fleet["nodes"] if n["ok"] and n["sweep"]]
    title = title or f"output throughput against {latency}" + (" (SIMULATED)" if fleet.get("simulated") else "")
    width, left, right, top, bottom = 760, 70, 150, 34, 46
    height = 340
    plot_w, plot_h = width - left - right, height - top - bottom
    pts_all = [
        (p["metrics"].get(latency), p["metrics"].get("output_throughput")) for _h, sweep, _b in series for p in sweep
    ]
    pts_all = [(x, y) for x, y in pts_all if isinstance(x, (int, float)) and isinstance(y, (int, float))]
    body = []
    if not pts_all:
        body.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no sweep</text>')
        return _frame(width, height, title, "".join(body), title)
    xmax = _nice_max(max(x for x, _y in pts_all) * 1.05)
    ymax = _nice_max(max(y for _x, y in pts_all) * 1.1)
    for t in _ticks(xmax):
        x = left + t / xmax * plot_w
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eee"/>')
        body.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _ticks(ymax):
        y = top + plot_h - t / ymax * plot_h
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for i, (host, sweep, best) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        coords = []
        for p in sweep:
            x, y = p["metrics"].get(latency), p["metrics"].get("output_throughput")
            if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                coords.append((left + x / xmax * plot_w, top + plot_h - y / ymax * plot_h, p))
        if coords:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y, _p in coords)
            body.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, p in coords:
            ok = not p.get("slo_missed")
            ring = ' stroke="#000" stroke-width="2"' if p["max_concurrency"] == best else ""
            body.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color if ok else "#fff"}" '
                f'stroke="{color}"{ring}><title>{_esc(host)} c={p["max_concurrency"]}</title></circle>'
                f'<text x="{x + 6:.1f}" y="{y - 6:.1f}">c={p["max_concurrency"]}</text>'
            )
        ly = top + 14 + 16 * i
        best_txt = f" (SLO max c={best})" if best is not None else ""
        body.append(
            f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="12" height="3" fill="{color}"/>'
            f'<text x="{left + plot_w + 30}" y="{ly - 4}">{_esc(host)}{_esc(best_txt)}</text>'
        )
    body.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>'
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">{_esc(latency)}; hollow: misses the '
        f"SLO</text>"
    )
    return _frame(width, height, title, "".join(body), title)


class FilterModule:
    """kimi.vllm benchmark report filters."""

    def filters(self):
        """Map filter names to functions."""
        return {
            "bench_fleet": bench_fleet,
            "bench_fleet_markdown_rows": bench_fleet_markdown_rows,
            "bench_table_metrics": bench_table_metrics,
            "bench_svg_throughput": bench_svg_throughput,
            "bench_svg_cdf": bench_svg_cdf,
            "bench_svg_sweep": bench_svg_sweep,
        }
