"""Schemathesis hooks for scripts/fuzz.sh: put the real tokenId the script connected (FUZZ_TOKEN_ID) into
about half of the generated tokenId slots (the `tokenId` path parameter, `authToken` and `fromAuthToken`
in bodies, with `type` / `fromType` set to its integration), so the token-backed paths answer from a live sandbox account and their 200 bodies are checked
against the schema too, not only their refusals. `DELETE /api/v1/account` is left alone: deleting the
connection would turn every later case into `tokenNotFound`.
"""

import os
import zlib

import schemathesis

TOKEN_ID = os.environ.get("FUZZ_TOKEN_ID", "")
# Each tokenId field with the field naming its integration, set to the connection's when present.
TOKEN_FIELDS = (("authToken", "type"), ("fromAuthToken", "fromType"))
INTEGRATION = "binanceInternationalDirect"


def _pick(case) -> bool:
    # Deterministic per case (its generated content), so a run is reproducible with --seed.
    return zlib.crc32(repr((case.path_parameters, case.body)).encode()) % 2 == 0


@schemathesis.hook
def map_case(context, case):
    if not TOKEN_ID or case.operation.method.upper() == "DELETE" or not _pick(case):
        return case
    if isinstance(case.path_parameters, dict) and "tokenId" in case.path_parameters:
        case.path_parameters["tokenId"] = TOKEN_ID
    if isinstance(case.body, dict):
        for field, kind in TOKEN_FIELDS:
            if field in case.body:
                case.body[field] = TOKEN_ID
                if kind in case.body:
                    case.body[kind] = INTEGRATION
    return case
