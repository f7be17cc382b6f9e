"""Plain-text (markdown pipe) tables from the results run.py collects.

A result set is the JSON-able dict that ``run.measure`` returns for one
interpreter; the combined tables take several of them.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from costs import BIG_TABLE_MODULES
from scenarios import SCENARIOS, Scenario

Result = dict[str, Any]

GEOMEAN = "*geomean*"  # the workload column of rows that summarise a scenario


def table(headers: list[str], rows: Iterable[list[str]], right: Iterable[int] = ()) -> str:
    """A markdown pipe table padded to line up in a terminal too."""
    rows = [list(map(str, row)) for row in rows]
    right = set(right)
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if i in right else c.ljust(w)
                  for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule] + [line(row) for row in rows])


def ratio_text(ratio: Optional[float]) -> str:
    """"1.23x", or "n/a" where there is no ratio."""
    return "n/a" if ratio is None else "%.2fx" % ratio


def geomean(values: list[float]) -> Optional[float]:
    """Geometric mean (the right mean of ratios), None for no values."""
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def version_label(result: Result) -> str:
    """"3.12 native" / "3.11 lowimpact": which implementation a ratio comes from."""
    return "%s %s" % (result["version"], "native" if result["native"] else "lowimpact")


def design_text(scenario: Scenario, native: bool) -> str:
    """The DESIGN.md reference that applies to this scenario on this interpreter."""
    d = scenario.design
    if scenario.family == "legacy":
        return "3.11: %s" % d.settrace311 if d.settrace311 else ""
    if native:
        return "native %s" % d.native if d.native else ""
    if d.target == "<=native":
        return "<= native (%s)" % d.native
    return "target %s" % d.target if d.target else ""


def _row_ratio(row: Result, key: str = "ratio") -> Optional[float]:
    """The row's ratio (or cpu_ratio), None if it could not be measured."""
    return None if row.get("reason") else row.get(key)


def _summary_rows(rows: list[Result], key: str = "ratio") -> dict[str, str]:
    """Geometric mean of each scenario's ratios over the workloads that ran, as text.

    "(!)" marks a mean that includes a flagged measurement.
    """
    ratios: dict[str, list[float]] = {}
    flagged: set[str] = set()
    for row in rows:
        ratio = _row_ratio(row, key)
        ratios.setdefault(row["scenario"], [])
        if ratio is not None:
            ratios[row["scenario"]].append(ratio)
            if row["flags"]:
                flagged.add(row["scenario"])
    return {name: ratio_text(geomean(values)) + (" (!)" if name in flagged else "")
            for name, values in ratios.items()}


def interpreter_report(result: Result) -> str:
    """Every table for one interpreter."""
    out = ["## Python %s (%s)" % (result["full_version"], result["engine"]),
           "",
           "%s; median of %d runs per cell, each in a fresh process; ratio = monitored / "
           "unmonitored median of perf_counter time; cpu ratio = the same with process_time, "
           "which ignores time spent waiting for a core; noise = (max - min) / median of the "
           "unmonitored and of the monitored runs."
           % ("Quick sizes" if result["quick"] else "Full sizes", result["runs"]),
           ""]
    rows = result.get("rows", [])
    if rows:
        means = _summary_rows(rows)
        cpu_means = _summary_rows(rows, "cpu_ratio")
        several = len({row["workload"] for row in rows}) > 1
        lines = []
        last = None
        for row in rows:
            scenario = SCENARIOS[row["scenario"]]
            if several and last is not None and last != row["scenario"]:
                lines.append(_geomean_line(last, means[last], cpu_means[last]))
            last = row["scenario"]
            if row.get("reason"):
                lines.append([row["scenario"], row["workload"], "%.3f" % row["base_s"]
                              if row.get("base_s") else "", "", _failed_text(row), "",
                              design_text(scenario, result["native"]), "", row["reason"]])
                continue
            lines.append([row["scenario"], row["workload"], "%.3f" % row["base_s"],
                          "%.3f" % row["mon_s"], ratio_text(row["ratio"]),
                          ratio_text(row.get("cpu_ratio")), design_text(scenario, result["native"]),
                          "%d%% / %d%%" % (round(row["base_noise"] * 100),
                                           round(row["noise"] * 100)),
                          "; ".join(row["flags"])])
        if several:
            lines.append(_geomean_line(last, means[last], cpu_means[last]))
        out.append(table(["scenario", "workload", "base s", "monitored s", "ratio", "cpu ratio",
                          "design", "noise base/mon", "notes"], lines, right=(2, 3, 4, 5, 7)))
        out.append("")
        out.append("Breakpoint (never-hit) lines:")
        for name, info in result["breakpoints"].items():
            if info.get("bp_line"):
                out.append("- %s: %s, line %d (+%d)" % (name, info["hot"], info["bp_line"],
                                                        info["offset"]))
            else:
                out.append("- %s: %s: %s" % (name, info.get("hot", "?"),
                                             info.get("why") or info.get("error")))
        out.append("")
    if "enable" in result:
        out.append(enable_table(result["enable"]))
        out.append("")
    if "imports" in result:
        out.append(imports_table(result["imports"], result["native"]))
        out.append("")
    return "\n".join(out)


def _failed_text(row: Result) -> str:
    """"n/a" for a scenario this interpreter cannot run, "error" for one that broke."""
    return "n/a" if row["reason"].startswith("n/a") else "error"


def _geomean_line(scenario: str, mean: str, cpu_mean: str) -> list[str]:
    """The summary row under a scenario's rows."""
    return [scenario, GEOMEAN, "", "", mean, cpu_mean, "", "", ""]


def enable_table(enable: Result) -> str:
    """Cost of set_events(LINE) / set_events(0) with a big heap."""
    if enable.get("reason"):
        return "Enabling LINE with a big heap: n/a (%s)" % enable["reason"]
    m = enable["median"]
    title = ("Enabling global LINE (callback returns DISABLE) with %d objects (%d tracked by "
             "the gc) and %d functions alive; median of %d runs, ms:"
             % (m["objects"], m["gc_objects"], m["functions"], enable["runs"]))
    rows = [
        ["set_events(tool, LINE)", "%.2f" % m["enable_ms"]],
        ["first call of every function, LINE on", "%.2f" % m["first_calls_on_ms"]],
        ["  same calls, no events (before enabling)", "%.2f" % m["calls_off_ms"]],
        ["restart_events(), every function's lines disabled", "%.2f" % m["restart_all_ms"]],
        ["restart_events() after one call, median (us)", "%.2f" % m["restart_each_us"]],
        ["restart_events(), every function's PY_START disabled (bdb)",
         "%.2f" % m["restart_bdb_ms"]],
        ["  same after one call, median (us)", "%.2f" % m["restart_bdb_each_us"]],
        ["set_events(tool, 0)", "%.2f" % m["disable_ms"]],
        ["  same calls again, after disabling", "%.2f" % m["calls_after_ms"]],
    ]
    return title + "\n\n" + table(["step", "ms"], rows, right=(1,))


def imports_table(imports: Result, native: bool) -> str:
    """Import time of big stdlib packages with LINE, and LINE+BRANCH, on vs off."""
    if imports.get("reason"):
        return "Imports with events on: n/a (%s)" % imports["reason"]
    design = "native 1.08-1.12 (LINE)" if native else "LINE target <=1.15"
    rows = []
    for row in imports["rows"]:
        cells = [row["label"], str(row["modules"]), "%.3f" % row["plain_s"]]
        for events in ("LINE", "LINE+BRANCH"):
            cells += ["%.3f" % row[events]["seconds"], ratio_text(row[events]["ratio"])]
        noise = [row["base_noise"], row["LINE"]["noise"], row["LINE+BRANCH"]["noise"]]
        rows.append(cells + [design, " / ".join("%d%%" % round(n * 100) for n in noise)])
    text = ("Importing big stdlib packages (.pyc already compiled), global events whose "
            "callbacks return DISABLE, median of %d runs:\n\n" % imports["runs"]
            + table(["modules", "count", "plain s", "LINE s", "ratio", "LINE+BRANCH s",
                     "ratio", "design", "noise plain/L/L+B"], rows,
                    right=(1, 2, 3, 4, 5, 6, 8)))
    text += ("\n\n\"big tables preloaded\": %s (and what they import) are imported "
             "before timing; they are nearly all literal tables, where the first LINE "
             "events cost the most." % BIG_TABLE_MODULES)
    if imports.get("slowest"):
        text += ("\n\nModules whose own import time grew most with LINE on "
                 "(one -X importtime run each way): "
                 + ", ".join("%s +%.1f ms (%.1f -> %.1f)" % (name, on - off, off, on)
                             for name, off, on in imports["slowest"]))
    return text


def combined_report(results: list[Result]) -> str:
    """Ratios of every interpreter side by side, with the legacy equivalents."""
    labels = [version_label(r) for r in results]
    mismatches = _event_count_mismatches(results)  # first: it flags rows
    cells = [_RatioCells(r) for r in results]
    workloads: list[str] = []
    for r in results:
        for row in r.get("rows", []):
            if row["workload"] not in workloads:
                workloads.append(row["workload"])
    if len(workloads) > 1:
        workloads.append(GEOMEAN)
    lines = []
    for name, scenario in SCENARIOS.items():
        if scenario.family != "monitoring":
            continue
        legacy = scenario.legacy_equivalent
        for workload in workloads:
            if not any(c.has(name, workload) for c in cells):
                continue
            lines.append([name, workload]
                         + [c.text(name, workload) for c in cells]
                         + [legacy or "-"]
                         + [c.text(legacy, workload) if legacy else "" for c in cells]
                         + [scenario.design.target])
    n = len(results)
    headers = (["scenario", "workload"] + labels + ["legacy equivalent"]
               + ["%s legacy" % r["version"] for r in results] + ["target"])
    right = list(range(2, 2 + n)) + list(range(3 + n, 3 + 2 * n))
    out = ["## All interpreters: ratio to unmonitored (monitoring API vs. legacy hooks)", "",
           table(headers, lines, right=right), ""]
    if any(c.flagged for c in cells) or mismatches:
        out += ["(!) flagged: see the notes of that interpreter's table%s."
                % (", and the event counts below" if mismatches else ""), ""]
    if mismatches:
        out += ["Event counts more than %gx away from native %s (same workload and size):"
                % (COUNT_TOLERANCE, _first_native(results)["version"]), ""]
        out += ["- %s" % line for line in mismatches] + [""]
    cost_rows = [
        [label] + [get(r) for r in results]
        for label, get in (
            ("set_events(LINE) ms", lambda r: _enable_value(r, "enable_ms")),
            ("first calls with LINE on ms", lambda r: _enable_value(r, "first_calls_on_ms")),
            ("same calls, no events ms", lambda r: _enable_value(r, "calls_off_ms")),
            ("set_events(0) ms", lambda r: _enable_value(r, "disable_ms")),
            ("imports with LINE, ratio", lambda r: _imports_value(r, 0, "LINE")),
            ("  same, big tables preloaded", lambda r: _imports_value(r, 1, "LINE")),
            ("imports with LINE+BRANCH, ratio", lambda r: _imports_value(r, 0, "LINE+BRANCH")),
            ("  same, big tables preloaded", lambda r: _imports_value(r, 1, "LINE+BRANCH")),
        )
    ]
    if any(cell != "" for row in cost_rows for cell in row[1:]):
        out += ["Cost of turning events on:", "",
                table(["measurement"] + labels, cost_rows, right=range(1, n + 1)), ""]
    return "\n".join(out)


COUNT_TOLERANCE = 2.0  # versions compile differently, but not by this much


def _first_native(results: list[Result]) -> Optional[Result]:
    """The native interpreter whose event counts the others are checked against."""
    return next((r for r in results if r["native"]), None)


def _event_count_mismatches(results: list[Result]) -> list[str]:
    """Non-native rows whose per-event counts are far from native's, marked flagged.

    A cheap engine that skips events would otherwise look fast: the counts
    say whether it did the same work as the native implementation.
    """
    native = _first_native(results)
    if native is None:
        return []
    reference = {(row["scenario"], row["workload"]): row for row in native.get("rows", [])}
    found: dict[tuple[str, str, str], list[str]] = {}
    for result in results:
        if result["native"]:
            continue
        for row in result.get("rows", []):
            ref = reference.get((row["scenario"], row["workload"]))
            if row.get("reason") or not ref or ref.get("reason"):
                continue
            for event, count in row.get("by_event", {}).items():
                expected = ref["by_event"].get(event, 0)
                if expected and not (expected / COUNT_TOLERANCE <= count
                                     <= expected * COUNT_TOLERANCE):
                    key = (version_label(result), row["scenario"], event)
                    found.setdefault(key, []).append("%s %d vs %d" % (row["workload"], count,
                                                                      expected))
                    if "event counts" not in row["flags"]:
                        row["flags"].append("event counts")
    return ["%s %s, %s: %s" % (label, scenario, event, ", ".join(where))
            for (label, scenario, event), where in found.items()]


class _RatioCells:
    """The ratio cells of one interpreter's results, by (scenario, workload)."""

    def __init__(self, result: Result) -> None:
        rows = result.get("rows", [])
        self.rows = {(row["scenario"], row["workload"]): row for row in rows}
        self.means = _summary_rows(rows)
        self.flagged = False

    def has(self, scenario: str, workload: str) -> bool:
        """Whether this interpreter has a cell (even n/a) for the pair."""
        if workload == GEOMEAN:
            return scenario in self.means
        return (scenario, workload) in self.rows

    def text(self, scenario: str, workload: str) -> str:
        """The cell: ratio, "n/a"/"error", "(!)" if flagged, "" if absent."""
        if workload == GEOMEAN:
            mean = self.means.get(scenario, "")
            self.flagged |= mean.endswith("(!)")
            return mean
        row = self.rows.get((scenario, workload))
        if row is None:
            return ""
        if row.get("reason"):
            return _failed_text(row)
        if row["flags"]:
            self.flagged = True
            return ratio_text(row["ratio"]) + " (!)"
        return ratio_text(row["ratio"])


def _enable_value(result: Result, key: str) -> str:
    """One median of the enable-cost measurement, as table text."""
    enable = result.get("enable")
    if enable is None:
        return ""
    if enable.get("reason"):
        return "n/a"
    return "%.2f" % enable["median"][key]


def _imports_value(result: Result, variant: int, events: str) -> str:
    """One imports ratio, as table text."""
    imports = result.get("imports")
    if imports is None:
        return ""
    if imports.get("reason"):
        return "n/a"
    return ratio_text(imports["rows"][variant][events]["ratio"])
