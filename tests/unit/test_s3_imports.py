"""The S3 store's errors, and the services that branch on them, load neither boto3 nor botocore."""

from __future__ import annotations

import subprocess
import sys


def test_the_s3_errors_and_the_storage_services_import_without_boto3() -> None:
    # A fresh interpreter: this one may have loaded boto3 for another test already.
    probe = (
        "import sys\n"
        "import evidence_agent.adapters.s3.errors\n"
        "import evidence_agent.services.storing\n"
        "import evidence_agent.services.storage_check\n"
        "import evidence_agent.services.daemon\n"
        "loaded = sorted(m for m in ('boto3', 'botocore') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_the_s3_store_loads_boto3() -> None:
    """The check above can fail: importing the store itself does load boto3."""
    probe = (
        "import sys\nimport evidence_agent.adapters.s3.store\nprint('botocore' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "True"
