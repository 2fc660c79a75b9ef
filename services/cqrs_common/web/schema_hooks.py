"""drf-spectacular post-processing: the answers gunicorn gives before Django sees a request
(cqrs_common.web.server_errors) are documented on every operation, since any request can meet them."""

from __future__ import annotations

from typing import Any

SERVER_ERRORS = {
    "414": "The request line (method, path and query) is over 8190 bytes; answered by the HTTP server.",
    "431": "A header field is over 8190 bytes, or there are over 100; answered by the HTTP server.",
}
# The problem+json schema's component: each API names it after its own serializer.
PROBLEM_SCHEMAS = ("Problem", "ProblemOutput")


def document_server_errors(result: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    schemas = result.get("components", {}).get("schemas", {})
    name = next((name for name in PROBLEM_SCHEMAS if name in schemas), None)
    if name is None:
        return result
    problem = {"application/problem+json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for status, description in SERVER_ERRORS.items():
                operation.setdefault("responses", {}).setdefault(
                    status, {"description": description, "content": problem}
                )
    return result
