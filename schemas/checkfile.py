"""`vaxflow check-file FILE…`: what NHS England's receiver would say about a file, before sending it.

The vaccine type and sender come from the file name, as they do for the receiver, so the name is
checked first and a bad name stops that file. Output lines name the file, row, field and rule,
never a value: the tool is run on real patient files and its output ends up in tickets.
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from schemas.batchfile import ParsedRow, read_file
from schemas.delimited import TableError
from schemas.extended import is_extended_file_name, parse_extended_file_name, read_extended
from schemas.fields import reason as rule_reason
from schemas.filenames import FileNameError, parse_batch_file_name
from schemas.permissions import Permissions, default_permissions, load_permissions
from schemas.record import Reason, Record
from schemas.validate import validate_record

Out = Callable[[str], None]
_CUD = frozenset("CUD")

# A file is sent as written, not as vaxflow would rewrite it. Every form validate_record accepts
# and rewrites is also taken by the receiver as written, except one: an ISO DATE_AND_TIME whose
# offset is not in its pre-validator's strict list (`Z`, `-00:00`, `+05:30`, ...).
_RECEIVER_ISO_OFFSETS = ("+00:00", "+01:00", "+0000", "+0100")
_RECEIVER_DATED = ("PERSON_DOB", "RECORDED_DATE")
_FILE_OFFSET = Reason(
    field="DATE_AND_TIME",
    rule="DATE_AND_TIME.file_offset",
    message="DATE_AND_TIME is ISO 8601 with an offset the receiver refuses as written "
    "(it takes +00:00, +01:00, +0000 or +0100)",
)


def validate_as_written(
    vaccine_type: str,
    sender_ods: str,
    record: Mapping[str, str | None],
    *,
    permissions: Permissions,
    now: datetime | None,
) -> Record | list[Reason]:
    """validate_record, plus what the receiver refuses in the value as written."""
    outcome = validate_record(vaccine_type, sender_ods, record, permissions=permissions, now=now)
    if isinstance(outcome, Record) and outcome.ACTION_FLAG != "DELETE":
        given = record.get("DATE_AND_TIME") or ""
        if given[4:5] == "-" and not given.endswith(_RECEIVER_ISO_OFFSETS):
            return [_FILE_OFFSET]
        # The receiver's "not in the future" is its host's UTC date, a day behind London's from
        # 23:00 to 24:00 UTC in summer; the pipeline holds such files (workers/uploader/utcdate.py),
        # but a file checked here may be sent at once.
        today_utc = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d")
        late = [name for name in _RECEIVER_DATED if getattr(outcome, name) > today_utc]
        if late:
            return [rule_reason(name, "future") for name in late]
    return outcome


def main(paths: Sequence[str], *, permissions_path: str | None = None, now: datetime | None = None) -> int:
    """Check every file; 1 if any file or row would fail at the receiver, else 0."""
    permissions = load_permissions(permissions_path) if permissions_path else default_permissions()
    results = [_check(path, permissions, now, print) for path in paths]
    return 0 if all(results) else 1


def _check(path: str, permissions: Permissions, now: datetime | None, out: Out) -> bool:
    name = Path(path).name
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        out(f"{path}: file.unreadable – {error.strerror}")
        return False
    try:
        if is_extended_file_name(name):
            return _check_extended(path, name, data, permissions, now, out)
        return _check_batch(path, name, data, permissions, now, out)
    except FileNameError as error:
        out(f"{path}: file.name – {error.message} ({error.detail})")
    except TableError as error:
        out(f"{path}: {error.rule} – {error.message}")
    return False


def _check_batch(path: str, name: str, data: bytes, permissions: Permissions, now: datetime | None, out: Out) -> bool:
    parsed_name = parse_batch_file_name(
        name, vaccine_types=permissions.vaccine_types, ods_codes=permissions.suppliers.keys()
    )
    vaccine_type, ods = parsed_name.vaccine_type, parsed_name.ods_code
    if not permissions.letters(ods, vaccine_type):
        out(f"{path}: file.permission – sender {ods} holds no C/U/D permission for {vaccine_type}")
        return False
    validator = partial(validate_as_written, permissions=permissions, now=now)
    parsed = read_file(data, vaccine_type=vaccine_type, sender_ods=ods, validator=validator)
    problems = {row.number: list(row.reasons) for row in parsed.rows if row.reasons}
    for number, reason in _repeated_news(parsed.rows):
        problems.setdefault(number, []).append(reason)
    for number in sorted(problems):
        for reason in problems[number]:
            out(f"{path}:{number}: {reason.field} {reason.rule} – {reason.message}")
    return _summary(path, len(parsed.rows), len(problems), parsed.encoding, parsed.delimiter, out)


def _repeated_news(rows: Sequence[ParsedRow]) -> list[tuple[int, Reason]]:
    """A second NEW for an identifier that an earlier valid row of the file created (and no DELETE
    since) is refused by the receiver as a duplicate (422), so it is as certain a failure as a
    bad field; rows are applied in file order (digest section b)."""
    created: dict[tuple[str, str], int] = {}
    found = []
    for row in rows:
        record = row.record
        if record is None:
            continue
        key = (record.UNIQUE_ID_URI, record.UNIQUE_ID)
        if record.ACTION_FLAG == "DELETE":
            created.pop(key, None)
        elif record.ACTION_FLAG == "NEW":
            if key in created:
                message = f"NEW repeats the identifier created by row {created[key]}; the receiver refuses it"
                found.append((row.number, Reason(field="UNIQUE_ID", rule="row.duplicate_new", message=message)))
            else:
                created[key] = row.number
    return found


def _check_extended(
    path: str, name: str, data: bytes, permissions: Permissions, now: datetime | None, out: Out
) -> bool:
    parsed_name = parse_extended_file_name(name, ods_codes=permissions.suppliers.keys())
    ods = parsed_name.ods_code
    if not permissions.letters(ods, parsed_name.vaccine_type) >= _CUD:
        out(f"{path}: file.permission – sender {ods} needs C, U and D permission for COVID")
        return False
    rows = read_extended(data, now=now)
    for row in rows:
        for reason in row.reasons:
            out(f"{path}:{row.number}: {reason.field} {reason.rule} – {reason.message}")
    failed = sum(1 for row in rows if row.reasons)
    return _summary(path, len(rows), failed, "", "", out)


def _summary(path: str, total: int, failed: int, encoding: str, delimiter: str, out: Out) -> bool:
    layout = f", {encoding}, delimiter {delimiter!r}" if encoding else ""
    verdict = "FAIL" if failed else "OK"
    note = " (no rows: the receiver records 'Not processed - Empty file')" if total == 0 else ""
    out(f"{path}: {verdict} – {total} rows, {total - failed} valid, {failed} invalid{layout}{note}")
    return failed == 0
