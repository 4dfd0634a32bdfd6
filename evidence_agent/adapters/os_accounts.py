"""The person running a command, from the process's real user id and groups (never $USER)."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from evidence_agent.domain.roles import Identity


def current_identity() -> Identity:
    """The real uid's account name and every group it is in.

    $USER and $LOGNAME are not read: anyone can set them, and roles hang on this name."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid{uid}"
    return Identity(user=user, uid=uid, groups=_group_names({os.getgid(), *os.getgroups()}))


def identity_of_uid(uid: int) -> Identity:
    """Another process's account (a local API caller's uid, from the kernel): its name, and the
    groups the user database gives it (its primary group and every group listing it)."""
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        return Identity(user=f"uid{uid}", uid=uid)
    gids = os.getgrouplist(account.pw_name, account.pw_gid)
    return Identity(user=account.pw_name, uid=uid, groups=_group_names(set(gids)))


def _group_names(gids: set[int]) -> frozenset[str]:
    groups = set()
    for gid in gids:
        try:
            groups.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            groups.add(f"gid{gid}")
    return frozenset(groups)


_UNSET_LOGINUID = 0xFFFFFFFF  # (uid_t)-1: the process descends from no login session


def login_user(pid: int | None = None) -> str | None:
    """The account that logged in to the session a process runs in (the kernel's audit login
    uid, /proc/PID/loginuid): the person behind `sudo`, which keeps it, and which no
    unprivileged process can change. None outside a login session. `pid` None: this process."""
    where = "self" if pid is None else str(pid)
    try:
        uid = int(Path(f"/proc/{where}/loginuid").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    if uid == _UNSET_LOGINUID:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"
