"""Callers of the local API run as one OS account: its threads each send a round of requests at once.

Run by test_local_api_load.py as `python -m tests.e2e.api_callers SPEC` under the account;
SPEC is JSON: socket, threads, prefix (of the threads' case numbers), clips ([id, sha256]
pairs), out (a directory of the account's). Prints one JSON list: every request's operation,
its exit code (0 for a result), whether it was lost (no answer), and for a retrieval whether
the copy has the clip's bytes."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

from evidence_agent.services.local_api import call


def one_caller(spec: dict[str, Any], n: int, start: threading.Barrier) -> list[dict[str, Any]]:
    clip, sha256 = spec["clips"][n % len(spec["clips"])]
    case = f"{spec['prefix']}-{n}"
    target = Path(spec["out"]) / str(n)
    why = "load test"
    search = {"officer": "100231", "limit": 20}
    requests: list[tuple[str, dict[str, Any]]] = [
        ("case.create", {"number": case, "type": "other", "reason": why}),
        ("clips.search", search),
        ("retrieve", {"clips": [clip], "case": None, "target": str(target), "reason": why}),
        ("case.link", {"number": case, "clips": [clip], "reason": why}),
        ("clips.search", search),
        ("case.unlink", {"number": case, "clips": [clip], "reason": why}),
    ]
    done = []
    start.wait()
    for op, fields in requests:
        row: dict[str, Any] = {"op": op, "lost": False, "exit": 0}
        try:
            result, error = call(Path(spec["socket"]), op, fields, target=target)
        except Exception as e:  # noqa: BLE001 - a request without an answer is what is counted
            row.update(lost=True, exit=None, message=str(e))
        else:
            if error is not None:
                row.update(exit=int(error.exit_code), message=error.message)
            elif op == "retrieve":
                (item,) = result["handed_over"]
                copy = (target / item["file"]).read_bytes()
                row["same_bytes"] = hashlib.sha256(copy).hexdigest() == sha256
        done.append(row)
    return done


def main() -> None:
    spec = json.loads(sys.argv[1])
    start = threading.Barrier(spec["threads"])
    results: list[list[dict[str, Any]]] = [[] for _ in range(spec["threads"])]

    def run(n: int) -> None:
        results[n] = one_caller(spec, n, start)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(spec["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    json.dump([row for rows in results for row in rows], sys.stdout)


if __name__ == "__main__":
    main()
