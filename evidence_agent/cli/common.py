"""What every command group shares: the root context, the station opener, `--json` and its output."""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evidence_agent.config import Settings, load_settings

if TYPE_CHECKING:
    from evidence_agent.custody.vocabulary import Subject
    from evidence_agent.domain.roles import Action
    from evidence_agent.services.station import Station  # sqlalchemy loads only when a command runs

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON result on stdout.")]


@dataclass
class Context:
    """The root callback's options; the settings are loaded the first time a command asks."""

    config_path: Path | None
    verbose: bool
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


def root_context(ctx: typer.Context) -> Context:
    obj = ctx.find_root().obj
    assert isinstance(obj, Context)
    return obj


def settings_of(ctx: typer.Context) -> Settings:
    return root_context(ctx).settings


@contextmanager
def open_station(
    ctx: typer.Context, *, actor: str | None = None, create: bool = True, sign_acts: bool = True
) -> Iterator[Station]:
    """The configured station for one command, closed when the command ends. Commands that only
    read pass `create=False`: run with the wrong data directory they must say there is no
    station there, not quietly make a new one (and a new signing key)."""
    from evidence_agent.services.station import open_station as open_configured

    settings = settings_of(ctx)
    station_account_only(ctx, settings)
    station = open_configured(settings, actor=actor, create=create, sign_acts=sign_acts)
    # Modules, ORM mappings and the station live as long as the command: leave them out of
    # the collector's scans (a full scan of them costs tens of ms, every few seconds of ingest).
    gc.freeze()
    try:
        yield station
    finally:
        station.close()


def require_role(
    ctx: typer.Context,
    station: Station,
    action: Action,
    *,
    subject_kind: Subject,
    subject_id: str,
    reason: str = "",
) -> None:
    """Go on when the calling OS user's roles allow `action`; else the refusal is logged under
    their name and raised (exit 5). For the station's acts that say whom footage belongs to."""
    from evidence_agent.adapters.os_accounts import current_identity
    from evidence_agent.domain.roles import caller_for
    from evidence_agent.services.guard import require
    from review.settings import load_station_roles

    roles = load_station_roles(settings_of(ctx).data_dir).roles
    caller = caller_for(current_identity(), roles)
    require(
        station, caller, action, subject_kind=subject_kind, subject_id=subject_id, reason=reason
    )


def run_through_daemon(settings: Settings, name: str, fields: dict[str, Any]) -> Any:
    """An operation's result from the daemon's local API, as the calling OS user; its error
    raised, with its exit code."""
    from evidence_agent.services.local_api import call

    result, error = call(settings.api_socket, name, fields)
    if error is not None:
        raise error
    return result


def station_account_only(ctx: typer.Context, settings: Settings) -> None:
    """Refuse, saying why and whose it is, a command that is the station's own work (`store`,
    `custody checkpoint`, `storage check`) when this account cannot open the data directory:
    on an installed station it is the service account's, and the daemon does this work."""
    if can_open(settings.data_dir):
        return
    import pwd

    from evidence_agent.errors import PermissionDeniedError

    try:
        owner = pwd.getpwuid(settings.data_dir.stat().st_uid).pw_name
    except (KeyError, OSError):
        owner = "the station's account"
    raise PermissionDeniedError(
        f"`{ctx.command_path}` is the station's own work, and its data directory "
        f"{settings.data_dir} is {owner}'s alone",
        remedy=f"the daemon does it by itself (systemctl status evidence-agent); to run it by "
        f"hand, as that account: sudo -u {owner} {ctx.command_path}",
    )


def can_open(data_dir: Path) -> bool:
    """Whether this account may open the station's data directory itself. Not on a station
    installed as a service (the directory is the service account's alone): commands then go
    through the daemon's local API. A directory that is not there is for the command to say."""
    try:
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except PermissionError:
        return False
    except OSError:
        return True
    os.close(fd)
    return True


def emit_json(value: Any) -> None:
    """A command's `--json` result, on stdout (logs and progress go to stderr)."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
