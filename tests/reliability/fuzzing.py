"""Contract fuzzing with schemathesis against a live service, and what it found.

One *round* is one `st run` of the CLI against the service's own `/openapi.json`:
all four phases (explicit examples, coverage of boundary values, random fuzzing in
positive and negative modes, and stateful sequences that follow the links
schemathesis infers: PUT a run, then allocate, report, look up, summarise, delete).
Every request and answer is read back from the HAR report (the ground truth for
"how many requests, which statuses"), every failed check from the NDJSON event
stream, and every unhandled exception from the service's JSON log.

The CLI runs in a subprocess rather than through schemathesis' Python API so that
the fuzzer's own threads and hypothesis state never mix with pytest's.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ST = Path(sys.executable).with_name("st")
HOOKS_MODULE = "tests.reliability.st_hooks"

#: Checks whose failure breaks the contract: a 5xx, an error outside the JSON shape,
#: a status, content type, header or body the OpenAPI document does not describe.
CONTRACT_CHECKS = frozenset(
    {
        "not_a_server_error",
        "contract_error_shape",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "use_after_free",
    }
)
#: Checks reported for information: schemathesis infers "valid" and "invalid" from
#: the JSON Schema alone, which cannot express cross-field rules (a budget inside the
#: feasible range, successes <= trials), so these need a human reading each case.
ADVISORY_CHECKS = frozenset(
    {
        "negative_data_rejection",
        "positive_data_acceptance",
        "allow_header_conformance",
        "unsupported_method",
        "missing_required_header",
        "ensure_resource_availability",
        "ignored_auth",
        "object_level_authorization",
    }
)


@dataclass
class Finding:
    """One failed check, with enough to replay it."""

    check: str
    code: str
    title: str
    operation: str
    message: str
    request: str

    def key(self) -> tuple[str, str, str]:
        """Identity for de-duplication across cases and rounds."""
        return (self.check, self.operation, self.title)


@dataclass
class FuzzResult:
    """Totals of one or more rounds."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    check_runs: Counter[str] = field(default_factory=Counter)
    check_failures: Counter[str] = field(default_factory=Counter)
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    rounds: int = 0

    @property
    def responses_5xx(self) -> int:
        """Responses with a 5xx status."""
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def contract_findings(self) -> list[Finding]:
        """Distinct failures of the checks that define the contract."""
        return [f for f in self.findings.values() if f.check in CONTRACT_CHECKS]

    def advisory_findings(self) -> list[Finding]:
        """Distinct failures of the informational checks."""
        return [f for f in self.findings.values() if f.check not in CONTRACT_CHECKS]

    def merge(self, other: FuzzResult) -> None:
        """Add another round's totals."""
        self.requests += other.requests
        self.statuses.update(other.statuses)
        self.operations.update(other.operations)
        self.check_runs.update(other.check_runs)
        self.check_failures.update(other.check_failures)
        for key, finding in other.findings.items():
            self.findings.setdefault(key, finding)
        self.server_errors.extend(other.server_errors)
        self.rounds += other.rounds


def _operation_of(url: str, method: str) -> str:
    path = url.split("://", 1)[-1].partition("/")[2].partition("?")[0]
    parts = path.split("/")
    if len(parts) >= 3 and parts[:2] == ["v1", "runs"]:
        parts[2] = "{run_id}"
    return f"{method} /{'/'.join(parts)}"


def read_har(path: Path, result: FuzzResult) -> None:
    """Requests, statuses and operations from a HAR report."""
    entries = json.loads(path.read_text())["log"]["entries"]
    for entry in entries:
        status = int(entry["response"]["status"])
        result.requests += 1
        result.statuses[status] += 1
        result.operations[_operation_of(entry["request"]["url"], entry["request"]["method"])] += 1


def _describe_request(interaction: dict[str, Any] | None) -> str:
    if not interaction:
        return ""
    request = interaction.get("request") or {}
    body = request.get("body")
    if isinstance(body, dict) and "$base64" in body:
        raw = base64.b64decode(body["$base64"])
        try:
            body = raw.decode()
        except UnicodeDecodeError:
            body = repr(raw)
    text = f"{request.get('method')} {request.get('uri')}"
    if body:
        text += f" body={str(body)[:600]}"
    return text


def read_ndjson(path: Path, result: FuzzResult) -> None:
    """Check outcomes and distinct failures from the NDJSON event stream."""
    with path.open() as events:
        for line in events:
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished.get("recorder") or {}
            interactions = recorder.get("interactions") or {}
            for case_id, checks in (recorder.get("checks") or {}).items():
                for check in checks:
                    name = check["name"]
                    result.check_runs[name] += 1
                    if check["status"] == "success":
                        continue
                    result.check_failures[name] += 1
                    failure = (check.get("failure_info") or {}).get("failure") or {}
                    finding = Finding(
                        check=name,
                        code=str(failure.get("code", "")),
                        title=str(failure.get("title", name)),
                        operation=str(failure.get("operation", recorder.get("label", ""))),
                        message=str(failure.get("message", ""))[:800],
                        request=_describe_request(interactions.get(case_id)),
                    )
                    result.findings.setdefault(finding.key(), finding)


def server_tracebacks(log_text: str) -> list[str]:
    """Unhandled exceptions the service logged (one JSON line each, with `exception`)."""
    found = []
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("exception"):
            found.append(str(entry["exception"]))
    return found


def run_round(
    base_url: str,
    report_dir: Path,
    *,
    token: str | None,
    max_examples: int,
    seed: int,
    phases: str = "examples,coverage,fuzzing,stateful",
    workers: int = 1,
    shrink: bool = True,
    timeout: float = 900.0,
) -> FuzzResult:
    """One `st run` against `base_url`; its totals and findings.

    Args:
        base_url: The live service, e.g. `http://127.0.0.1:8123`.
        report_dir: Where the HAR and NDJSON reports go (created).
        token: Bearer token sent with every request; None fuzzes unauthenticated.
        max_examples: Cases per operation and phase (schemathesis `-n`).
        seed: Hypothesis seed, so a round can be replayed exactly.
        phases: Comma-separated schemathesis phases.
        workers: Concurrent schemathesis workers.
        shrink: Minimise failing cases (more requests, clearer reports).
        timeout: Seconds before the round is abandoned.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    har = report_dir / f"round-{seed}.har.json"
    events = report_dir / f"round-{seed}.ndjson"
    command = [
        str(ST), "run", f"{base_url}/openapi.json",
        "--checks", "all",
        "--phases", phases,
        "--max-examples", str(max_examples),
        "--seed", str(seed),
        "--workers", str(workers),
        "--continue-on-failure",
        "--request-timeout", "30",
        "--suppress-health-check", "all",
        "--report", "har,ndjson",
        "--report-har-path", str(har),
        "--report-ndjson-path", str(events),
        "--output-truncate", "true",
    ]  # fmt: skip
    if not shrink:
        command.append("--no-shrink")
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": HOOKS_MODULE,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "NO_COLOR": "1",
    }
    completed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if not har.exists() or not events.exists():
        raise RuntimeError(
            f"schemathesis wrote no report (exit {completed.returncode}):\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    result = FuzzResult(rounds=1)
    read_har(har, result)
    read_ndjson(events, result)
    return result


__all__ = [
    "ADVISORY_CHECKS",
    "CONTRACT_CHECKS",
    "Finding",
    "FuzzResult",
    "read_har",
    "read_ndjson",
    "run_round",
    "server_tracebacks",
]
