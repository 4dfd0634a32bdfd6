"""The `evidence-agent` command: typer commands that parse, call one service, print and map errors to exit codes."""
