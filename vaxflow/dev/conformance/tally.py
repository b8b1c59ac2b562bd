"""The four-way table: pure counting and rendering, no I/O except writing between markers.

Each case is one input judged by both sides. The four outcomes are the only thing the harness
asserts about: the goal (issue 18) is 0 in VAXFLOW_ONLY_ACCEPTS, and every VAXFLOW_ONLY_REJECTS
class explained in decision 0003.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

BEGIN_MARKER: Final = "<!-- conformance-table:begin -->"
END_MARKER: Final = "<!-- conformance-table:end -->"


class Outcome(StrEnum):
    AGREE_ACCEPT = "agree-accept"
    AGREE_REJECT = "agree-reject"
    VAXFLOW_ONLY_ACCEPTS = "vaxflow-accepts-NHS-rejects"
    VAXFLOW_ONLY_REJECTS = "vaxflow-rejects-NHS-accepts"


def outcome(vaxflow_accepts: bool, nhs_accepts: bool) -> Outcome:
    if vaxflow_accepts and nhs_accepts:
        return Outcome.AGREE_ACCEPT
    if not vaxflow_accepts and not nhs_accepts:
        return Outcome.AGREE_REJECT
    return Outcome.VAXFLOW_ONLY_ACCEPTS if vaxflow_accepts else Outcome.VAXFLOW_ONLY_REJECTS


@dataclass(frozen=True)
class Case:
    """One judged input. `example` must already be safe to print (no patient-like value)."""

    source: str  # "generated events", "single-field mutations", "file names"
    column: str
    mutation: str
    vaxflow_accepts: bool
    nhs_accepts: bool
    vaxflow_reason: str = ""
    nhs_reason: str = ""
    example: str = ""


@dataclass
class _Class:
    count: int = 0
    vaxflow_reasons: Counter[str] = field(default_factory=Counter)
    nhs_reason: str = ""
    example: str = ""


@dataclass
class Tally:
    counts: dict[str, Counter[Outcome]] = field(default_factory=lambda: defaultdict(Counter))
    classes: dict[Outcome, dict[tuple[str, str], _Class]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, case: Case) -> Outcome:
        result = outcome(case.vaxflow_accepts, case.nhs_accepts)
        self.counts[case.source][result] += 1
        if result in (Outcome.VAXFLOW_ONLY_ACCEPTS, Outcome.VAXFLOW_ONLY_REJECTS):
            found = self.classes[result].setdefault((case.column, case.mutation), _Class())
            found.count += 1
            if case.vaxflow_reason:
                found.vaxflow_reasons[case.vaxflow_reason] += 1
            if not found.nhs_reason and case.nhs_reason:
                found.nhs_reason = case.nhs_reason
            if not found.example and case.example:
                found.example = case.example
        return result

    def total(self, result: Outcome) -> int:
        return sum(counter[result] for counter in self.counts.values())

    def rows(self) -> list[tuple[str, int, int, int, int, int]]:
        """(source, total, then the four outcomes in Outcome order), with an "all" row last."""
        out = []
        for source, counter in self.counts.items():
            out.append((source, sum(counter.values()), *(counter[o] for o in Outcome)))
        every = [self.total(o) for o in Outcome]
        out.append(("all", sum(every), *every))
        return out  # type: ignore[return-value]

    def markdown(self, explain: Callable[[str], str] | None = None) -> str:
        """The table, then each disagreement column broken down.

        vaxflow-only acceptances are listed per column and mutation (each one is a bug to fix).
        vaxflow-only refusals are grouped by mutation and vaxflow's rule, with the columns it
        hit, and `explain` (rule ids -> text) fills an explanation column.
        """
        header = "| inputs | judged | " + " | ".join(o.value for o in Outcome) + " |"
        lines = [header, "|---|---:|" + "---:|" * len(Outcome)]
        for source, total, *four in self.rows():
            lines.append(f"| {source} | {total} | " + " | ".join(str(n) for n in four) + " |")
        lines += ["", *self._accepts_markdown(), "", *self._rejects_markdown(explain)]
        return "\n".join(lines)

    def _accepts_markdown(self) -> list[str]:
        result = Outcome.VAXFLOW_ONLY_ACCEPTS
        lines = [f"**{result.value}** ({self.total(result)} cases):", ""]
        classes = self.classes.get(result, {})
        if not classes:
            return [*lines, "None."]
        lines += ["| column | mutation | cases | NHS England's refusal | example |", "|---|---|---:|---|---|"]
        for (column, mutation), found in sorted(classes.items()):
            cells = (column, mutation, str(found.count), found.nhs_reason, found.example)
            lines.append("| " + " | ".join(map(_cell, cells)) + " |")
        return lines

    def _rejects_markdown(self, explain: Callable[[str], str] | None) -> list[str]:
        result = Outcome.VAXFLOW_ONLY_REJECTS
        lines = [f"**{result.value}** ({self.total(result)} cases):", ""]
        classes = self.classes.get(result, {})
        if not classes:
            return [*lines, "None."]
        groups: dict[tuple[str, str], list[tuple[str, _Class]]] = defaultdict(list)
        for (column, mutation), found in sorted(classes.items()):
            groups[mutation, ",".join(sorted({_suffix(r) for r in found.vaxflow_reasons}))].append((column, found))
        lines += [
            "| mutation | vaxflow rule | columns | cases | example | why (decision 0003) |",
            "|---|---|---|---:|---|---|",
        ]
        for (mutation, suffixes), members in sorted(groups.items()):
            rules = ",".join(sorted({r for _, found in members for r in found.vaxflow_reasons}))
            shown = rules if len(members) == 1 else ",".join(f"*.{s}" for s in suffixes.split(","))
            cells = (
                mutation,
                shown,
                ", ".join(column for column, _ in members),
                str(sum(found.count for _, found in members)),
                next((found.example for _, found in members if found.example), ""),
                explain(rules) if explain else "",
            )
            lines.append("| " + " | ".join(map(_cell, cells)) + " |")
        return lines

    def text(self) -> str:
        width = max(len(o.value) for o in Outcome)
        lines = [f"{'inputs':<24} {'judged':>8} " + " ".join(f"{o.value:>{width}}" for o in Outcome)]
        for source, total, *four in self.rows():
            lines.append(f"{source:<24} {total:>8} " + " ".join(f"{n:>{width}}" for n in four))
        for result in (Outcome.VAXFLOW_ONLY_ACCEPTS, Outcome.VAXFLOW_ONLY_REJECTS):
            lines += ["", f"{result.value} by column / mutation:"]
            for (column, mutation), found in sorted(self.classes.get(result, {}).items()):
                rule = ", ".join(r for r, _ in found.vaxflow_reasons.most_common(2)) or "-"
                lines.append(
                    f"  {column:<34} {mutation:<32} {found.count:>5}  vaxflow: {rule}  NHS: {found.nhs_reason or '-'}"
                    f"  e.g. {found.example}"
                )
        return "\n".join(lines)


def _suffix(rule: str) -> str:
    return rule.partition(".")[2]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_between_markers(path: Path, content: str) -> None:
    """Replace what lies between BEGIN_MARKER and END_MARKER in `path` (both must be there once)."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if start < 0 or end < start or text.count(BEGIN_MARKER) != 1 or text.count(END_MARKER) != 1:
        raise ValueError(f"{path} needs exactly one {BEGIN_MARKER} followed by one {END_MARKER}")
    head = text[: start + len(BEGIN_MARKER)]
    path.write_text(f"{head}\n{content.strip()}\n{text[end:]}", encoding="utf-8")
