"""The person running a command, from the process's real user id and groups (never $USER)."""

from __future__ import annotations

import grp
import os
import pwd

from evidence_agent.domain.roles import Identity


def current_identity() -> Identity:
    """The real uid's account name and every group it is in.

    $USER and $LOGNAME are not read: anyone can set them, and roles hang on this name."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid{uid}"
    gids = {os.getgid(), *os.getgroups()}
    groups = set()
    for gid in gids:
        try:
            groups.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            groups.add(f"gid{gid}")
    return Identity(user=user, uid=uid, groups=frozenset(groups))
