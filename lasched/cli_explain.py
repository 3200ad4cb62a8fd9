"""``lasched explain`` and ``lasched latency``: ask a running scheduler, show the answer.

Both read the scheduler's read-only debug endpoints (:mod:`lasched.debugapi`)
over HTTP: from the scheduler's host (or through ``kubectl port-forward``)
no credentials are needed; from elsewhere, ``--token-file`` sends a bearer
token the scheduler checks with the apiserver.

Exit status: 0 with an answer, 1 when the scheduler cannot be reached or
refuses (the message says why), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

JSON = dict[str, Any]


class FetchError(RuntimeError):
    """The scheduler could not be asked, or refused; the message says which."""


def main(args: argparse.Namespace) -> int:
    console = Console()
    try:
        if args.command == "explain":
            if args.pod.count("/") != 1 or not all(args.pod.split("/")):
                print(f"lasched explain: give the pod as namespace/name, not {args.pod!r}",
                      file=sys.stderr)  # fmt: skip
                return 2
            data = fetch(args.url, "/debug/explain", token_file=args.token_file, pod=args.pod)
            if args.json:
                sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                render_explain(console, data)
            return 0
        data = fetch(args.url, "/debug/latency", token_file=args.token_file)
        if args.json:
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif args.pairs:
            render_pairs(console, data)
            render_topology(console, data)
        else:
            render_matrix(console, data)
            render_topology(console, data)
        if args.export:
            n, left = export(data, Path(args.export))
            extra = f" ({left} stale pairs left out)" if left else ""
            console.print(f"wrote {n} pairs to {args.export}{extra}")
        if args.png:
            try:
                from lasched_dev import plots
            except ModuleNotFoundError:
                console.print(
                    "--png needs lasched-dev with its plots extra "
                    "(pip install './dev[plots]' from the source tree)"
                )
                return 2

            title = f"RTT in ms, row measures column (ttl {data['ttlSeconds']:g} s)"
            plots.heatmap_png(Path(args.png), places=places(data), pairs=data["pairs"], title=title)
            console.print(f"wrote {args.png}")
        return 0
    except FetchError as e:
        print(f"lasched {args.command}: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # an export path with an unknown suffix
        print(f"lasched {args.command}: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"lasched {args.command}: {e}", file=sys.stderr)
        return 1


def fetch(url: str, path: str, *, token_file: str | None = None, **query: str) -> JSON:
    """GET ``url + path`` and decode its JSON; :class:`FetchError` says what went wrong."""
    full = url.rstrip("/") + path
    if query:
        full += "?" + urllib.parse.urlencode(query)
    headers = {"Accept": "application/json"}
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise FetchError(f"cannot read --token-file {token_file}: {e.strerror}") from e
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(full, headers=headers)
    if not full.startswith(("http://", "https://")):
        raise FetchError(f"--url must be an http:// or https:// address, not {url!r}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            body: JSON = orjson.loads(resp.read())
            return body
    except urllib.error.HTTPError as e:
        try:
            message = orjson.loads(e.read()).get("error") or e.reason
        except (orjson.JSONDecodeError, AttributeError):
            message = e.reason
        raise FetchError(f"{full}: {e.code} {message}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(
            f"cannot reach lasched at {url} ({reason}); is it running, and is --url right?"
        ) from None


# ---- explain --------------------------------------------------------------------


def _ago(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _clock(unix: float | None) -> str:
    return "" if unix is None else time.strftime("%H:%M:%S", time.localtime(unix))


def _status_line(st: JSON) -> str:
    reason = st.get("reason") or st["code"]
    return f"{st['plugin']}: {reason}" if st.get("plugin") else reason


def render_explain(console: Console, data: JSON) -> None:
    """The explain answer as a person reads it: state, queue, gang, then per-node verdicts."""
    head = f"[bold]{escape(data['pod'])}[/]  {data['state']}"
    if data.get("node"):
        head += f" on [bold]{escape(data['node'])}[/]"
    head += f"  (scheduler {escape(data['schedulerName'])}, priority {data['priority']})"
    console.print(head)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    if data.get("profile") is None:
        facts.add_row("", "not one of this scheduler's profiles: lasched does not schedule it")
    for problem in data.get("problems") or []:
        facts.add_row("problem", f"[red]{escape(problem)}")
    if q := data.get("queue"):
        _queue_facts(facts, q)
    if nominated := data.get("nominatedNode"):
        facts.add_row("nominated", f"{escape(nominated)} (room held after preemption)")
    if p := data.get("permit"):
        waits = ", ".join(
            f"{w['plugin']} (deadline in {_ago(w['deadlineInSeconds'])})" for w in p["waitingFor"]
        )
        facts.add_row("permit", f"reserved on {escape(p['node'])}, waiting for {waits}")
    if g := data.get("gang"):
        _gang_facts(facts, g)
    if data.get("latency"):
        facts.add_row("latency", escape(data["latency"]))
    pe = data.get("preEnqueue")
    if pe and pe["code"] != "Success":
        facts.add_row("PreEnqueue", f"[yellow]{escape(_status_line(pe))}[/] (gated: not tried)")
    for st in data.get("preFilter") or []:
        if st["code"] not in ("Success", "Skip"):
            facts.add_row("PreFilter", f"[yellow]{escape(_status_line(st))}")
    console.print(facts)
    if filt := data.get("filter"):
        _render_filter(console, data, filt)
    if data.get("scores"):
        _render_scores(console, data["scores"])


def _queue_facts(facts: Table, q: JSON) -> None:
    parts = [q["where"], f"{q['attempts']} attempt(s)", f"queued {_ago(q['inQueueSeconds'])}"]
    if q.get("unschedulableForSeconds") is not None:
        parts.append(
            f"unschedulable since {_clock(q['unschedulableSince'])} "
            f"({_ago(q['unschedulableForSeconds'])} ago)"
        )
    if q.get("backoffRemainingSeconds") is not None:
        until, left = _clock(q["backoffUntil"]), _ago(q["backoffRemainingSeconds"])
        parts.append(f"backoff until {until} (in {left})")
    facts.add_row("queue", ", ".join(parts))
    if q.get("reason"):
        facts.add_row("last reason", escape(q["reason"]))


def _gang_facts(facts: Table, g: JSON) -> None:
    if g.get("allOrNothing") is False:
        # A basic-policy PodGroup: its members are scheduled one by one.
        facts.add_row("group", escape(f"{g['group']}: {g.get('sizeSource', '')}"))
        return
    required = g["required"] if g["required"] is not None else "? (members still arriving)"
    line = f"{escape(g['group'])}: {g['placed']} placed of {required} required"
    if g.get("sizeSource"):
        line += f" ({escape(g['sizeSource'])})"
    line += ", admitted" if g["permitted"] else ""
    line += f"; holder {escape(g['holder'])}" if g.get("holder") else "; no group is reserving"
    if g.get("deadlineInSeconds") is not None:
        line += f"; deadline in {_ago(g['deadlineInSeconds'])}"
    if g.get("backoffRemainingSeconds") is not None:
        line += f"; group backs off for {_ago(g['backoffRemainingSeconds'])}"
    facts.add_row("gang", line)
    members = ", ".join(
        f"{m['pod'].split('/', 1)[1]} {m['state']}" + (f" on {m['node']}" if m["node"] else "")
        for m in g["members"]
    )
    facts.add_row("members", escape(members))


def _render_filter(console: Console, data: JSON, filt: JSON) -> None:
    title = f"Filter: {filt['feasible']} of {filt['evaluated']} nodes fit"
    if filt.get("stoppedAtPreFilter"):
        title += " (by the filters PreFilter let run; the cycle stops at PreFilter)"
    console.print(f"[bold]{title}")
    table = Table()
    for col in ("node", "verdict", "plugin", "reason"):
        table.add_column(col, overflow="fold")
    for v in filt["nodes"]:
        if v["feasible"]:
            mark = "[green]fits"
            if data.get("node") == v["node"]:
                mark += " (its node)"
            table.add_row(v["node"], mark, "", "")
            continue
        first, *more = v["rejections"]
        reason = first.get("detail") or first.get("reason") or first["code"]
        lines = [escape(reason)]
        lines += [
            f"[dim]also {escape(r['plugin'])}: {escape(r.get('detail') or r.get('reason') or '')}"
            for r in more
        ]
        table.add_row(v["node"], "[red]rejected", first["plugin"], "\n".join(lines))
    console.print(table)
    console.print(f"[dim]{escape(filt['summary'])}")


_SHORT = {
    "NodeResourcesFit": "Fit",
    "NodeResourcesBalancedAllocation": "Balanced",
    "NodeAffinity": "Affinity",
    "TaintToleration": "Taints",
    "LatencyScore": "Latency",
}


def _render_scores(console: Console, sc: JSON) -> None:
    plugins = list(sc["weights"])
    if sc["reevaluation"]:
        title = (
            f"Scores now, a re-evaluation (the pod is on {sc['currentNode']}; "
            "the decision itself is in its Scheduled event)"
        )
    else:
        title = "Scores if it were tried now (the highest total wins)"
    console.print(f"[bold]{title}")
    table = Table()
    table.add_column("node")
    table.add_column("total", justify="right")
    for p in plugins:
        table.add_column(_SHORT.get(p, p), justify="right")
    table.add_column("")
    for row in sc["nodes"]:
        marks = []
        if row["node"] in sc["best"]:
            marks.append("[green]best")
        if row["node"] == sc.get("currentNode"):
            marks.append("its node")
        table.add_row(
            row["node"],
            str(row["total"]),
            *(str(row["plugins"].get(p, "")) for p in plugins),
            ", ".join(marks),
        )
    console.print(table)
    weights = ", ".join(f"{p} x{w}" for p, w in sc["weights"].items())
    console.print(f"[dim]each plugin scores 0-100; total = sum of score x weight ({weights})")
    if sc.get("skipped"):
        console.print(f"[dim]not scoring (nothing to prefer): {', '.join(sc['skipped'])}")


# ---- latency --------------------------------------------------------------------


def places(data: JSON) -> list[str]:
    """Nodes, then endpoints, then any other place that appears in a pair."""
    seen = list(data.get("nodes") or [])
    for e in data.get("endpoints") or []:
        if e not in seen:
            seen.append(e)
    for p in data["pairs"]:
        for place in (p["src"], p["dst"]):
            if place not in seen:
                seen.append(place)
    return seen


def render_matrix(console: Console, data: JSON) -> None:
    """Rows measure (source), columns are measured (target); stale cells in red.

    Columns are headed by the places' names when the terminal is wide enough,
    else by numbers that the rows (and a legend for places that measure
    nothing, such as user endpoints) spell out.
    """
    pairs = {(p["src"], p["dst"]): p for p in data["pairs"]}
    cols = places(data)
    rows = [r for r in cols if any(src == r for src, _ in pairs)]
    number = {c: str(i) for i, c in enumerate(cols, 1)}
    label = max((len(r) for r in rows), default=4) + 4
    by_name = label + sum(max(len(c), 4) + 1 for c in cols) + 20 <= console.width
    table = Table(
        title=f"RTT in ms, row → column (ttl {data['ttlSeconds']:g} s)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
    )
    table.add_column("from \\ to", style="bold", no_wrap=True)
    for c in cols:
        widest = max(
            (len(f"{p['ms']:.1f}") for (_, dst), p in pairs.items() if dst == c), default=1
        )
        table.add_column(
            c if by_name else number[c], justify="right", no_wrap=True, min_width=min(widest, 5)
        )
    table.add_column("oldest", justify="right", no_wrap=True, min_width=5)
    for r in rows:
        cells = []
        ages: list[float] = []
        for c in cols:
            p = pairs.get((r, c))
            if p is None:
                cells.append("[dim]·" if r != c else "[dim]-")
                continue
            if p["source"] != "static":
                ages.append(p["ageSeconds"])
            text = f"{p['ms']:.1f}" if p["ms"] < 100 else f"{p['ms']:.0f}"
            cells.append(f"[red]{text}!" if p["stale"] else text)
        oldest = f"{max(ages):.0f} s" if ages else "-"
        name = r if by_name else f"{number[r]:>2} {r}"
        table.add_row(name, *cells, oldest)
    console.print(table)
    if not by_name:
        others = [f"{number[c]} {c}" for c in cols if c not in rows]
        if others:
            console.print("columns measured only: " + ", ".join(others))
    _latency_footer(console, data)


def render_pairs(console: Console, data: JSON) -> None:
    table = Table(title=f"Measured pairs (ttl {data['ttlSeconds']:g} s)", title_justify="left")
    for col, justify in (("from", "left"), ("to", "left"), ("rtt ms", "right"),
                         ("p90 ms", "right"), ("loss", "right"), ("age", "right"),
                         ("fresh", "left"), ("source", "left")):  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for p in data["pairs"]:
        table.add_row(
            p["src"],
            p["dst"],
            f"{p['ms']:.1f}",
            "" if p["p90Ms"] is None else f"{p['p90Ms']:.1f}",
            f"{p['loss']:.0%}",
            "static" if p["source"] == "static" else f"{p['ageSeconds']:.0f} s",
            "[red]stale" if p["stale"] else "yes",
            p["source"],
        )
    console.print(table)
    _latency_footer(console, data)


def _latency_footer(console: Console, data: JSON) -> None:
    stale = sum(1 for p in data["pairs"] if p["stale"])
    sources = Counter(p["source"] for p in data["pairs"])
    by_source = ", ".join(f"{n} {s}" for s, n in sorted(sources.items())) or "none"
    agents = data.get("agents") or []
    console.print(
        f"{len(data['pairs'])} pairs ({by_source}), {stale} stale (red, '!': hard limits treat "
        f"them as unknown); {len(agents)} agent(s) connected"
    )


def render_topology(console: Console, data: JSON) -> None:
    """Each node's inferred site, coarser groups and tier, and any move waiting out its hold.

    Nothing when inference is off (``topology`` null or absent: an older scheduler).
    """
    topo = data.get("topology")
    if not topo:
        return
    layers = [layer["name"] for layer in topo["layers"]]
    limits = ", ".join(f"{layer['name']} ≤ {layer['maxRttMs']:g} ms" for layer in topo["layers"])
    table = Table(
        title=f"Inferred topology ({limits}; hold {topo['holdSeconds']:g} s)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("node", style="bold", no_wrap=True)
    for name in (*layers, "tier", "moving to"):
        table.add_column(name, no_wrap=True)
    for node, place in sorted(topo["nodes"].items(), key=lambda kv: (kv[1][layers[0]], kv[0])):
        pending = place.get("pending")
        moving = ""
        if pending:
            moving = "/".join(pending[k] for k in (*layers, "tier"))
            moving += f" in {pending['inSeconds']:.0f} s"
        table.add_row(node, *(place[k] for k in (*layers, "tier")), moving)
    console.print(table)
    sites = len({p[layers[0]] for p in topo["nodes"].values()})
    written = "written as topology.lasched.io/* labels" if topo["writeLabels"] else "not written"
    console.print(f"{len(topo['nodes'])} nodes in {sites} {layers[0]}(s); labels {written}")


def export(data: JSON, path: Path) -> tuple[int, int]:
    """Fresh pairs to ``path`` in the static-file format; returns (written, stale left out)."""
    fresh = [p for p in data["pairs"] if not p["stale"]]
    left = len(data["pairs"]) - len(fresh)
    suffix = path.suffix.lower()
    if suffix == ".json":
        matrix: dict[str, dict[str, float]] = {}
        for p in fresh:
            matrix.setdefault(p["src"], {})[p["dst"]] = p["ms"]
        path.write_bytes(orjson.dumps(matrix, option=orjson.OPT_INDENT_2) + b"\n")
    elif suffix == ".csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["source", "target", "rtt_ms"])
        for p in fresh:
            w.writerow([p["src"], p["dst"], p["ms"]])
        path.write_text(buf.getvalue())
    else:
        raise ValueError(f"--export must end in .json or .csv, not {path.name!r}")
    return len(fresh), left
