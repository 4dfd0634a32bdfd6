"""`evidence-agent roles ...`: who holds which role; an administrator's grant and revoke, each logged under their name."""

from __future__ import annotations

import os
import pwd
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evidence_agent.cli.common import (
    JsonOption,
    emit_json,
    open_station,
    root_context,
    run_through_daemon,
)
from evidence_agent.cli.display import write_line
from evidence_agent.errors import ConfigError, InputError, PermissionDeniedError

if TYPE_CHECKING:
    from evidence_agent.services.roles_changes import RolesEdit

roles_app = typer.Typer(
    help="Who holds which role: the roles file, changed by an administrator, each change logged.",
    no_args_is_help=True,
)

UserArgument = Annotated[str, typer.Argument(help="The person's OS account name.")]
RolesArgument = Annotated[
    list[str],
    typer.Argument(
        help="officer, clerk, supervisor, auditor, admin or reviewer.", show_default=False
    ),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (required): it goes into the custody log.")
]


def register(app: typer.Typer) -> None:
    app.add_typer(roles_app, name="roles")


@roles_app.command("show")
def show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The roles the roles file gives, by account and by group, and the officers' badges."""
    from review.settings import load_station_roles

    settings = root_context(ctx).settings
    try:
        review = load_station_roles(settings.data_dir)
    except PermissionError as e:
        raise _not_admin("read", e) from e
    roles = review.roles
    view: dict[str, Any] = {
        "file": str(review.source) if review.source else None,
        "users": {u: sorted(r.value for r in rs) for u, rs in sorted(roles.users.items())},
        "groups": {g: sorted(r.value for r in rs) for g, rs in sorted(roles.groups.items())},
        "officers": dict(sorted(roles.badges.items())),
        "deletion_approval": review.deletion_approval.value,
    }
    if as_json:
        emit_json(view)
        return
    out = sys.stdout
    write_line(out, f"roles file: {view['file'] or 'none (the evidence-* groups only)'}")
    for kind in ("users", "groups"):
        for name, held in view[kind].items():
            write_line(out, f"  {kind[:-1]:<5} {name:<24} {', '.join(held)}")
    for user, badge in view["officers"].items():
        write_line(out, f"  badge {user:<24} {badge}")
    write_line(out, f"deletion approval: {view['deletion_approval']}")


@roles_app.command("grant")
def grant(
    ctx: typer.Context,
    user: UserArgument,
    roles: RolesArgument,
    reason: ReasonOption,
    as_json: JsonOption = False,
) -> None:
    """Give an account roles by name in the roles file; logged under your name (root's, and the
    login behind sudo) as roles.changed, before anyone acts under them."""
    _change(ctx, user, roles, (), reason, as_json)


@roles_app.command("revoke")
def revoke(
    ctx: typer.Context,
    user: UserArgument,
    roles: RolesArgument,
    reason: ReasonOption,
    as_json: JsonOption = False,
) -> None:
    """Take roles given by name from an account; logged under your name as roles.changed."""
    _change(ctx, user, (), roles, reason, as_json)


def _change(
    ctx: typer.Context,
    user: str,
    grant: tuple[str, ...] | list[str],
    revoke: tuple[str, ...] | list[str],
    reason: str,
    as_json: bool,
) -> None:
    from evidence_agent.services.roles_changes import (
        ROLES_FILE_NAME,
        RolesEdit,
        replace_roles_file,
    )
    from review.roles_admin import edit_user_roles

    if not reason.strip():
        raise InputError("--reason is empty", remedy="say why the roles change (it is logged)")
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise InputError(
            f"there is no account {user!r} on this system",
            remedy="check the spelling, or create the account first (useradd)",
        ) from None
    settings = root_context(ctx).settings
    path = settings.data_dir / ROLES_FILE_NAME
    try:
        # The data directory's own account logs the change itself; anyone else (root on an
        # installed station) through the daemon, which owns it: root's own process then writes
        # nothing in the station's directory but the roles file.
        here = settings.data_dir.stat().st_uid == os.getuid()
    except FileNotFoundError:
        raise ConfigError(
            f"there is no station at {settings.data_dir}",
            remedy="check data_dir in the configuration",
        ) from None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except PermissionError as e:
        raise _not_admin("read", e) from e
    edited = edit_user_roles(text, user, grant=grant, revoke=revoke, source=path)
    digest = replace_roles_file(path, edited.text.encode("utf-8"))
    edit = RolesEdit(user, edited.granted, edited.revoked, digest, reason.strip())
    if here:
        logged = _record_here(ctx, edit)
    else:
        logged = run_through_daemon(settings, "roles.record", edit.to_json())
    result = {**logged, **edit.to_json()}
    if as_json:
        emit_json(result)
        return
    done = [f"gave {', '.join(edit.granted)}"] if edit.granted else []
    done += [f"took {', '.join(edit.revoked)}"] if edit.revoked else []
    write_line(sys.stdout, f"{user}: {'; '.join(done)} (logged as roles.changed)")


def _record_here(ctx: typer.Context, edit: RolesEdit) -> dict[str, Any]:
    from evidence_agent.adapters.os_accounts import current_identity, login_user
    from evidence_agent.domain.roles import caller_for
    from evidence_agent.services.roles_changes import RolesWatch
    from review.settings import load_station_roles

    settings = root_context(ctx).settings
    caller = caller_for(current_identity(), load_station_roles(settings.data_dir).roles)
    with open_station(ctx, actor=caller.actor, create=False) as station:
        result: dict[str, Any] = RolesWatch(station).record_edit(caller, login_user(), edit)
    return result


def _not_admin(what: str, error: OSError) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"cannot {what} the roles file: {error.strerror}",
        remedy="roles are kept by an administrator: sudo evidence-agent roles ...",
    )
