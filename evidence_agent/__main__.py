"""`python -m evidence_agent`: the same as the `evidence-agent` command."""

from evidence_agent.cli import main

main()
