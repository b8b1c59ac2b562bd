"""Differential harness: vaxflow's validation beside NHS England's receiver code (issue 18).

    python -m vaxflow.dev.conformance --nhs-repo /tmp/nhs-fhir-api [--setup-venv] [--events 3000]
        [--bases 12] [--names 400] [--seed 18] [--now ISO] [--write-docs docs/conformance.md]

A development tool, not a CI dependency: it needs a local copy of the public
NHSDigital/immunisation-fhir-api repository and a venv for their code (docs/conformance.md).

Inputs: `--events` generated events (vaxflow.dev.samples.make_event, seeded), then every
single-field mutation of every column (mutations.py) applied to `--bases` generated events
each, then file names (vaxflow's own, from the batcher's naming, and mutated ones).

vaxflow's side is validate_event_row with the Python rules, the function the validator runs: for
an accepted event NHS England sees the canonical row vaxflow would write, in a file written as
vaxflow writes one; for a refused event it sees the raw values in the same file layout (what the
receiver would have judged had vaxflow passed the event on). validate_event, the compiled fast
path and check-file's row path must agree with it; differences are counted and printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from schemas.batchfile import assemble_file, read_file, render_values
from schemas.columns import COLUMNS
from schemas.delimited import TableError
from schemas.extended import extended_file_name, is_extended_file_name, parse_extended_file_name
from schemas.fastpath import FAST_ROWS
from schemas.filenames import FileNameError, parse_batch_file_name, part_file_name
from schemas.permissions import Permissions, default_permissions
from schemas.record import Reason
from schemas.validate import validate_event, validate_event_row, validate_record
from vaxflow.dev.conformance.explain import explain
from vaxflow.dev.conformance.mutations import PATIENT_COLUMNS, all_mutations, clock_mutations, mutated_records
from vaxflow.dev.conformance.nhs import Verdict, judge, setup_venv
from vaxflow.dev.conformance.tally import Case, Outcome, Tally, write_between_markers
from vaxflow.dev.samples import make_event

GENERATED = "generated events"
MUTATED = "single-field mutations"
NAMES = "file names"


@dataclass(frozen=True)
class Judged:
    """vaxflow's verdict on one event and the file NHS England is shown for it."""

    accepted: bool
    reasons: str
    vaccine_type: str
    ods: str
    data: bytes | None  # None: the raw values cannot be written into a UTF-8 file at all
    path_differs: str  # "" or which other entry point disagreed with the Python row path


def judge_vaxflow(event: dict[str, Any], permissions: Permissions, now: datetime) -> Judged:
    """The Python rules decide (they are the rule table's one source); the others are cross-checks.

    validate_event must agree on accept/reject, and the compiled fast path (when installed) must
    give the same row. A compiled module built from other sources than these rules (the venv is
    shared) shows up here as a difference, not as a changed table.
    """
    raw = json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    python = validate_event_row(raw, permissions=permissions, now=now, native=False)
    native = validate_event_row(raw, permissions=permissions, now=now)
    full = validate_event(raw, permissions=permissions, now=now)
    differs = []
    if native != python:
        differs.append("compiled fast path")
    if isinstance(full, list) != isinstance(python, list):
        differs.append("validate_event")
    record = event.get("record", {})
    values = [str(record.get(column, "")) for column in COLUMNS]
    try:
        raw_file: bytes | None = assemble_file([render_values(values)])
    except UnicodeEncodeError:
        raw_file = None
    if raw_file is not None and _check_file_accepts(raw_file, event, permissions, now) != (
        not isinstance(python, list)
    ):
        differs.append("check-file rows")
    if not isinstance(python, list):
        vaccine_type, ods, row, _extended = python
        return Judged(True, "", vaccine_type, ods, assemble_file([row]), "+".join(differs))
    data = raw_file
    reasons = ",".join(sorted({r.rule for r in python if isinstance(r, Reason)}))
    vaccine_type, ods = str(event.get("vaccine_type", "")), str(event.get("sender_ods", ""))
    return Judged(False, reasons, vaccine_type, ods, data, "+".join(differs))


def _check_file_accepts(data: bytes, event: dict[str, Any], permissions: Permissions, now: datetime) -> bool:
    """`vaxflow check-file`'s row path (read_file with validate_record) on the raw values as a file.

    The type and sender are the event's, upper-cased as a file name would carry them.
    """
    validator = partial(validate_record, permissions=permissions, now=now)
    try:
        parsed = read_file(
            data,
            vaccine_type=str(event.get("vaccine_type", "")).upper(),
            sender_ods=str(event.get("sender_ods", "")).upper(),
            validator=validator,
        )
    except TableError:
        return False
    return all(not row.reasons for row in parsed.rows) and len(parsed.rows) == 1


def _safe_example(column: str, mutation: str, value: str) -> str:
    """The mutated value, unless the column names a patient (then only the mutation's name)."""
    if column in PATIENT_COLUMNS or not column:
        return mutation
    shown = value if len(value) <= 40 else value[:20] + f"…({len(value)} chars)"
    return ascii(shown)


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _scrub(reason: str, record: dict[str, str]) -> str:
    for column in PATIENT_COLUMNS:
        value = record.get(column, "")
        if len(value) > 1:
            reason = reason.replace(value, f"<{column}>")
    return reason


@dataclass
class _Pending:
    source: str
    column: str
    mutation: str
    value: str
    record: dict[str, str]
    judged: Judged


def build_row_cases(
    rng: random.Random, permissions: Permissions, now: datetime, n_events: int, bases: int
) -> tuple[list[_Pending], int, Counter[tuple[str, str, str]]]:
    """Every row input with vaxflow's verdict: (cases, skipped as unwritable, where entry points differ)."""
    events = [make_event(rng, permissions=permissions, now=now) for _ in range(n_events)]
    pending = [
        _Pending(GENERATED, "", "generated", "", e["record"], judge_vaxflow(e, permissions, now)) for e in events
    ]
    news = [e for e in events if e["record"]["ACTION_FLAG"].upper() == "NEW"]
    for mutation in (*all_mutations(), *clock_mutations(now)):
        for base in rng.sample(news, min(bases, len(news))):
            for _, record in mutated_records(base["record"], (mutation,)):
                event = {**base, "record": record}
                value = record[mutation.column]
                judged = judge_vaxflow(event, permissions, now)
                pending.append(_Pending(MUTATED, mutation.column, mutation.name, value, record, judged))
    skipped = sum(1 for p in pending if p.judged.data is None)
    differing = Counter((p.judged.path_differs, p.column, p.mutation) for p in pending if p.judged.path_differs)
    return [p for p in pending if p.judged.data is not None], skipped, differing


def name_cases(rng: random.Random, permissions: Permissions, count: int) -> list[tuple[str, str, bool]]:
    """(mutation, name, vaxflow accepts) for vaxflow's own names and mutated ones.

    vaxflow's names come from part_file_name, as the batcher makes them, over windows spread
    across two years (both clock changes) for every sender and type it may send.
    """
    pairs = [(ods, vt) for ods in sorted(permissions.grants) for vt in sorted(permissions.grants[ods])]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out: list[tuple[str, str, bool]] = []
    for i in range(count):
        ods, vt = pairs[i % len(pairs)]
        window = start + timedelta(hours=rng.randrange(2 * 365 * 24))
        length = timedelta(seconds=rng.choice((60, 300, 3600)))
        name = part_file_name(vt, ods, window, length, rng.randrange(min(10, int(length.total_seconds()))))
        out.append(("vaxflow name", name, True))
        stem, ext = name.rsplit(".", 1)
        for label, variant in (
            ("lowercase", name.lower()),
            ("uppercase", name.upper()),
            ("ext .dat", f"{stem}.dat"),
            ("ext .txt", f"{stem}.txt"),
            ("extra _part", f"{stem}_p1.{ext}"),
            ("suffix 02", f"{stem[:-2]}02.{ext}"),
            ("no suffix", f"{stem[:-2]}.{ext}"),
            ("singular Vaccination", name.replace("_Vaccinations_", "_Vaccination_")),
            ("version v4", name.replace("_v5_", "_v4_")),
            ("unknown ODS", name.replace(f"_{ods}_", "_ZZZZ9_")),
            ("in a folder", f"in/{name}"),
        ):
            out.append((label, variant, _vaxflow_name_ok(variant, permissions)))
    return out


def extended_name_cases(rng: random.Random, permissions: Permissions, count: int) -> list[tuple[str, str, bool]]:
    """(mutation, name, vaxflow accepts) for extended-attribute file names (COVID only, as there)."""
    senders = [ods for ods in sorted(permissions.grants) if permissions.letters(ods, "COVID")]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out: list[tuple[str, str, bool]] = []
    for i in range(count):
        ods = senders[i % len(senders)]
        name = extended_file_name(ods, start + timedelta(seconds=rng.randrange(2 * 365 * 86400)))
        stem, ext = name.rsplit(".", 1)
        for label, variant in (
            ("vaxflow extended name", name),
            ("extended lowercase", name.lower()),
            ("extended ext .ctl", f"{stem}.ctl"),
            ("extended version v2", name.replace("_v1_", "_v2_")),
            ("extended suffix 02", f"{stem[:-2]}02.{ext}"),
        ):
            out.append((label, variant, _vaxflow_name_ok(variant, permissions)))
    return out


def _vaxflow_name_ok(name: str, permissions: Permissions) -> bool:
    """vaxflow's own reading of a name: its parser, then the sender's permission for the type.

    Extended-attribute files need C, U and D for COVID (spec digest section a).
    """
    ods_codes = frozenset(permissions.grants)
    try:
        if is_extended_file_name(name):
            parsed = parse_extended_file_name(name, ods_codes=ods_codes)
            return permissions.letters(parsed.ods_code, "COVID") >= {"C", "U", "D"}
        parsed = parse_batch_file_name(name, ods_codes=ods_codes)
    except FileNameError:
        return False
    return bool(permissions.letters(parsed.ods_code, parsed.vaccine_type))


def run(args: argparse.Namespace) -> Tally:
    permissions = default_permissions()
    fixed = args.now is not None
    now = args.now or datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(args.seed)
    started = time.monotonic()
    pending, skipped, differing = build_row_cases(rng, permissions, now, args.events, args.bases)
    requests = (
        {
            "id": i,
            "vaccine_type": p.judged.vaccine_type,
            "ods": p.judged.ods,
            "data": base64.b64encode(p.judged.data or b"").decode(),
        }
        for i, p in enumerate(pending)
    )
    log = Path(args.log) if args.log else None
    nhs_now = args.nhs_now or (now if fixed else None)
    verdicts = judge(args.venv, args.nhs_repo, "rows", requests, now=nhs_now, stderr_log=log)
    tally = Tally()
    for i, p in enumerate(pending):
        verdict = verdicts.get(i, Verdict(False, "missing", "no answer from the NHS runner"))
        nhs_reason = f"{verdict.stage}: {_scrub(_oneline(verdict.reason), p.record)}" if not verdict.accept else ""
        tally.add(
            Case(
                p.source,
                p.column or "(event)",
                p.mutation,
                p.judged.accepted,
                verdict.accept,
                p.judged.reasons,
                nhs_reason[:160],
                _safe_example(p.column, p.mutation, p.value),
            )
        )
    names = name_cases(rng, permissions, args.names) + extended_name_cases(rng, permissions, args.names // 4)
    name_requests = ({"id": i, "name": name} for i, (_, name, _) in enumerate(names))
    name_verdicts = judge(args.venv, args.nhs_repo, "names", name_requests, stderr_log=log)
    for i, (label, name, ok) in enumerate(names):
        verdict = name_verdicts[i]
        why = _oneline(verdict.reason)[:160]
        tally.add(Case(NAMES, "(file name)", label, ok, verdict.accept, "", why, ascii(name)))
    elapsed = time.monotonic() - started
    summary = (
        f"vaxflow {_commit()}, NHS England {args.nhs_commit or _commit(args.nhs_repo)}; "
        f"now {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({'fixed' if fixed else 'the clock'})"
        f"{f', NHS England judging at {args.nhs_now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC' if args.nhs_now else ''}, "
        f"seed {args.seed}, "
        f"{args.events} events, {args.bases} bases per mutation, {args.names} vaxflow names; {elapsed:.1f} s. "
        f"{len(pending)} rows judged, {skipped} not writable as UTF-8 (skipped). Compiled fast path "
        f"{'installed' if FAST_ROWS is not None else 'not installed'}; entry points that disagreed with the "
        f"Python rules: {sum(differing.values())} inputs."
    )
    print(tally.text())
    print()
    print(summary)
    for (which, column, mutation), count in sorted(differing.items()):
        print(f"  {which} differs: {column or '(event)'} / {mutation}: {count}")
    if args.write_docs:
        write_between_markers(Path(args.write_docs), summary + "\n\n" + tally.markdown(explain))
    return tally


def _commit(repo: Path | None = None) -> str:
    """The short commit of `repo` (vaxflow's own checkout when None), for the record of a run."""
    command = ["git", "rev-parse", "--short=8", "HEAD"]
    try:
        found = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    return found.stdout.strip()


def _instant(text: str) -> datetime:
    instant = datetime.fromisoformat(text)
    if instant.utcoffset() is None:
        raise argparse.ArgumentTypeError("--now needs an offset, e.g. +00:00")
    return instant


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vaxflow.dev.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--nhs-repo", type=Path, required=True, help="work tree of NHSDigital/immunisation-fhir-api")
    parser.add_argument(
        "--venv", type=Path, default=Path(tempfile.gettempdir()) / "nhs-venv", help="venv for NHS England's code"
    )
    parser.add_argument("--setup-venv", action="store_true", help="create the venv and install its packages first")
    parser.add_argument("--python", default="python3.11", help="interpreter for --setup-venv (the receiver's 3.11)")
    parser.add_argument("--events", type=int, default=3000, help="generated events")
    parser.add_argument("--bases", type=int, default=12, help="generated NEW events each mutation is applied to")
    parser.add_argument("--names", type=int, default=400, help="vaxflow file names (each also mutated 11 ways)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument(
        "--now",
        type=_instant,
        help="fix both sides' clock (ISO 8601 with offset), e.g. 2025-07-15T23:30:00+00:00 for the BST hour",
    )
    parser.add_argument(
        "--nhs-now",
        type=_instant,
        help="NHS England's clock, when it judges later than vaxflow validates (e.g. after an upload is held)",
    )
    parser.add_argument("--nhs-commit", help="the NHS commit to report, when --nhs-repo is an export without .git")
    parser.add_argument("--write-docs", metavar="PATH", help="write the table between the markers in PATH")
    parser.add_argument("--log", metavar="PATH", help="append the NHS runner's stderr here")
    parser.add_argument(
        "--fail-on-vaxflow-only-accepts", action="store_true", help="exit 1 if vaxflow accepts anything NHS rejects"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.nhs_repo / "lambdas" / "recordprocessor" / "src").is_dir():
        print(f"{args.nhs_repo} is not a work tree of NHSDigital/immunisation-fhir-api", file=sys.stderr)
        return 2
    if args.setup_venv:
        setup_venv(args.venv, args.python)
    tally = run(args)
    return 1 if args.fail_on_vaxflow_only_accepts and tally.total(Outcome.VAXFLOW_ONLY_ACCEPTS) else 0


if __name__ == "__main__":
    sys.exit(main())
