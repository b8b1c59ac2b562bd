"""NHS England's receiver as a JSON-lines service: run ONLY with the NHS venv's python, as a script.

    /tmp/nhs-venv/bin/python vaxflow/dev/conformance/nhs_side.py --nhs-repo /tmp/nhs-fhir-api --mode rows

This file is never imported by vaxflow (it would pull NHS England's code, fhir.resources and
pydantic 1 into vaxflow's process): the harness (vaxflow/dev/conformance/__main__.py) starts it
as a subprocess and speaks JSON lines on stdin/stdout. It imports only the standard library
itself; everything that judges a row or a name is NHS England's own code from the given
checkout, found by its module names with importlib, so nothing of theirs is copied here.

Modes (one process each, because lambdas/recordprocessor/src and lambdas/filenameprocessor/src
both have top-level `constants` and `models` modules):

- rows: a request {"id", "vaccine_type", "ods", "data"} where data is base64 of the file bytes
  (header, the row, line endings) exactly as vaxflow would write them. The bytes are decoded as
  their reader decodes (utf-8, then cp1252), read with csv.DictReader(delimiter="|"), the header
  is checked by their validate_content_headers, the file-level permission by their
  get_permitted_operations, the row by their process_row (ACTION_FLAG, permission, unique id,
  conversion to FHIR Immunization), the message round-trips through simplejson as on their
  Kinesis stream, and then their ImmunizationValidator (pre-validators, the fhir.resources R4B
  model, post-validators) runs, except for DELETE, which their forwarder does not validate.
- names: a request {"id", "name"}: their is_file_in_directory_root, then as their
  file_name_processor dispatches: validate_batch_file_key and validate_vaccine_type_permissions,
  or for names starting with their extended-attributes prefix validate_extended_attributes_file_key
  and validate_permissions_for_extended_attributes_files.

The reply is {"id", "accept": bool, "stage": str, "reason": str}.

Stubs, and why: their code reads its lookup tables (disease mapping, supplier permissions) from
ElastiCache through common.redis_client.get_redis_client(). That client's module global is
replaced with an in-memory object that answers hget/hkeys/hgetall from the repository's own
config/common/disease_mapping.json and config/<env>/permissions_config.json, shaped as their
redis_sync lambda stores them. No AWS client is touched: boto3 clients in common.clients are
created lazily and no code path used here asks for one (the S3, Kinesis, SQS and DynamoDB
steps around the row are not run).
"""

from __future__ import annotations

import argparse
import base64
import csv
import importlib
import io
import json
import logging
import os
import sys
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO


class _MemoryRedis:
    """The three hash reads their code makes, from the repository's config files."""

    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self._hashes = hashes

    def hget(self, key: str, field: str) -> str | None:
        return self._hashes.get(key, {}).get(field)

    def hkeys(self, key: str) -> list[str]:
        return list(self._hashes.get(key, {}))

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self._hashes.get(key, {}))


def _hashes(repo: Path, env: str) -> dict[str, dict[str, str]]:
    """The ElastiCache hashes as their redis_sync lambda would fill them (lists as JSON text)."""
    mapping = json.loads((repo / "config" / "common" / "disease_mapping.json").read_text())
    permissions = json.loads((repo / "config" / env / "permissions_config.json").read_text())
    # Entries without the keys are skipped, as redis_sync skips them.
    types = [e for e in mapping if "vacc_type" in e and "diseases" in e]
    suppliers = [e for e in permissions if "supplier" in e]
    return {
        "vacc_to_diseases": {e["vacc_type"]: json.dumps(e["diseases"]) for e in types},
        "diseases_to_vacc": {":".join(sorted(d["code"] for d in e["diseases"])): e["vacc_type"] for e in types},
        "supplier_permissions": {e["supplier"]: json.dumps(e["permissions"]) for e in suppliers if "permissions" in e},
        "ods_code_to_supplier": {ods: e["supplier"] for e in suppliers for ods in e.get("ods_codes", [])},
    }


def _freeze_clock(instant: datetime) -> None:
    """Make their "not in the future" check read `instant` instead of the host clock.

    Their pre-validators call datetime.now() (naive: the host's local time, UTC on their Lambda
    hosts) or datetime.now(tz). The module's `datetime` name is replaced by a subclass whose now()
    answers from `instant`; isinstance checks against it still accept ordinary datetimes.
    """
    module = importlib.import_module("common.models.utils.pre_validator_utils")

    class _Meta(type):
        def __instancecheck__(cls, obj: object) -> bool:
            return isinstance(obj, datetime)

    class _Frozen(datetime, metaclass=_Meta):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return instant.astimezone(tz) if tz else instant.astimezone(UTC).replace(tzinfo=None)

    setattr(module, "datetime", _Frozen)  # noqa: B010


def _short(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}"


class _Rows:
    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self.hashes = hashes
        self.process_row = importlib.import_module("process_row").process_row
        self.map_target_disease = importlib.import_module("mappings").map_target_disease
        levels = importlib.import_module("file_level_validation")
        self.validate_content_headers = levels.validate_content_headers
        self.get_permitted_operations = levels.get_permitted_operations
        self.validator = importlib.import_module("common.models.fhir_immunization").ImmunizationValidator()
        self.simplejson = importlib.import_module("simplejson")
        self._targets: dict[str, list[Any]] = {}

    def _decode(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252")

    def judge(self, request: dict[str, Any]) -> tuple[bool, str, str]:
        vaccine_type = str(request["vaccine_type"]).upper()
        ods = str(request["ods"]).upper()
        supplier = self.hashes["ods_code_to_supplier"].get(ods)
        if supplier is None:
            return False, "file-name", "ODS code maps to no supplier"
        try:
            permissions = json.loads(self.hashes["supplier_permissions"].get(supplier, "[]"))
            allowed = self.get_permitted_operations(supplier, vaccine_type, permissions)
        except Exception as error:
            return False, "file-permission", _short(error)
        reader = csv.DictReader(io.StringIO(self._decode(base64.b64decode(request["data"])), newline=""), delimiter="|")
        try:
            self.validate_content_headers(reader)
        except Exception as error:
            return False, "header", _short(error)
        rows = list(reader)
        if len(rows) != 1:
            return False, "csv", f"the data held {len(rows)} rows, not 1"
        if vaccine_type not in self._targets:
            self._targets[vaccine_type] = self.map_target_disease(vaccine_type)
        details = self.process_row(self._targets[vaccine_type], allowed, rows[0])
        if details.get("diagnostics"):
            return False, "recordprocessor", _short(ValueError(json.dumps(details["diagnostics"], default=str)))
        # The message crosses Kinesis as simplejson text and is read back with use_decimal.
        message = self.simplejson.loads(
            self.simplejson.dumps({"fhir_json": details["fhir_json"]}, ensure_ascii=False), use_decimal=True
        )
        if details.get("operation_requested") == "DELETE":
            return True, "forwarder", "DELETE is not validated"
        try:
            self.validator.validate(message["fhir_json"])
        except Exception as error:
            return False, "validator", _short(error)
        return True, "validator", ""


class _Names:
    def __init__(self) -> None:
        files = importlib.import_module("file_validation")
        permissions = importlib.import_module("supplier_permissions")
        self.in_root = files.is_file_in_directory_root
        self.validate_key = files.validate_batch_file_key
        self.validate_permissions = permissions.validate_vaccine_type_permissions
        self.extended_prefix = importlib.import_module("constants").EXTENDED_ATTRIBUTES_FILE_PREFIX
        self.validate_extended_key = files.validate_extended_attributes_file_key
        self.validate_extended_permissions = permissions.validate_permissions_for_extended_attributes_files

    def judge(self, request: dict[str, Any]) -> tuple[bool, str, str]:
        name = str(request["name"])
        if not self.in_root(name):
            return False, "root", "not in the bucket root"
        try:
            if name.startswith(self.extended_prefix):  # their dispatch: the extended-attributes family
                vaccine_type, ods = self.validate_extended_key(name)
                self.validate_extended_permissions(vaccine_type, ods)
            else:
                vaccine_type, supplier = self.validate_key(name)
                self.validate_permissions(vaccine_type, supplier)
        except Exception as error:
            return False, "file-name", _short(error)
        return True, "file-name", ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nhs-repo", required=True, type=Path)
    parser.add_argument("--mode", choices=("rows", "names"), required=True)
    parser.add_argument("--permissions-env", default="prod", help="config/<env>/permissions_config.json")
    parser.add_argument("--now", help="ISO instant with offset: their clock for 'not in the future' (default: host)")
    args = parser.parse_args(argv)
    lambdas = args.nhs_repo / "lambdas"
    own = "recordprocessor" if args.mode == "rows" else "filenameprocessor"
    sys.path[:0] = [str(lambdas / own / "src"), str(lambdas / "shared" / "src")]
    os.environ.setdefault("AWS_REGION", "eu-west-2")
    # Their modules log row details at INFO; nothing of it is wanted here, and stdout is the protocol.
    out: TextIO = sys.stdout
    sys.stdout = sys.stderr
    hashes = _hashes(args.nhs_repo, args.permissions_env)
    setattr(importlib.import_module("common.redis_client"), "redis_client", _MemoryRedis(hashes))  # noqa: B010
    judge = (_Rows(hashes) if args.mode == "rows" else _Names()).judge
    if args.now and args.mode == "rows":
        _freeze_clock(datetime.fromisoformat(args.now))
    logging.disable(logging.CRITICAL)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            accept, stage, why = judge(request)
        except Exception as error:  # their code raising is itself an outcome: the row fails there
            accept, stage, why = False, "exception", _short(error)
        out.write(json.dumps({"id": request["id"], "accept": accept, "stage": stage, "reason": why}) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
