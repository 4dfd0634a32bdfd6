"""`python -m evidence_agent`: the same as the `evidence-agent` command."""

from evidence_agent.cli.app import main

main()
