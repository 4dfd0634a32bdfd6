"""The mount port: recorder volumes mounted read-only under a private root, and its test double.

Building the `mount`/`umount` command lines is pure (tested with plain values); running them is
`SystemMounter`'s job. `DirectoryMounter` is the fake the tests and the folder dock use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from evidence_agent.errors import InputError, StorageError

logger = logging.getLogger(__name__)

DEFAULT_MOUNT_ROOT = Path("/run/evidence-agent/mnt")

# Evidence is read-only by construction: no writes, no set-uid, no device files, no execution.
BASE_OPTIONS = ("ro", "nosuid", "nodev", "noexec")

# Per filesystem: (the kernel type given to -t, extra options). FAT-family volumes have no owners:
# files are given to root and stripped of write bits so the agent's user can read, never change.
_FAT_OWNERSHIP = ("uid=0", "gid=0", "fmask=0333", "dmask=0222")
FILESYSTEMS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "vfat": ("vfat", _FAT_OWNERSHIP),
    "exfat": ("exfat", _FAT_OWNERSHIP),
    "ntfs": ("ntfs3", _FAT_OWNERSHIP),
    "ntfs3": ("ntfs3", _FAT_OWNERSHIP),
    # "noload": a read-only mount of ext3/4 would otherwise replay the journal, writing to the device.
    "ext4": ("ext4", ("noload",)),
    "ext3": ("ext3", ("noload",)),
    "ext2": ("ext2", ()),
}

_DEVNODE = re.compile(r"/dev/[A-Za-z0-9._/:-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_COMMAND_TIMEOUT_SECONDS = 60


class Mounter(Protocol):
    """Makes a docked device's filesystem readable as a directory, and takes it away again."""

    def mount(self, devnode: str, device_id: str, *, fs_type: str | None = None) -> Path:
        """Mount read-only and return the directory; InputError when the volume cannot be mounted."""
        ...

    def unmount(self, path: Path) -> None:
        """Unmount a directory returned by `mount`; unmounting twice is not an error."""
        ...


# -- pure: command lines ---------------------------------------------------------------------


def mount_options(fs_type: str | None) -> tuple[str, ...]:
    """The -o options for a filesystem type as udev reports it (ID_FS_TYPE); None: the base set."""
    if fs_type is None:
        return BASE_OPTIONS
    return BASE_OPTIONS + _filesystem(fs_type)[1]


def mount_point_name(device_id: str) -> str:
    """A directory name for a device: readable, and unique even where sanitising collides."""
    readable = _UNSAFE.sub("-", device_id).strip("-.")[:48] or "device"
    digest = hashlib.sha256(device_id.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{readable}-{digest}"


def build_mount_command(devnode: str, target: Path, fs_type: str | None) -> list[str]:
    """`mount` with read-only, hardened options; the filesystem type is never left to guessing when known."""
    check_devnode(devnode)
    command = ["mount"]
    if fs_type is not None:
        command += ["-t", _filesystem(fs_type)[0]]
    command += ["-o", ",".join(mount_options(fs_type)), devnode, str(target)]
    return command


def build_umount_command(target: Path, *, lazy: bool = False) -> list[str]:
    """`umount`; `lazy` detaches a mount whose device already vanished and that is still busy."""
    return ["umount", *(["--lazy"] if lazy else []), str(target)]


def check_devnode(devnode: str) -> None:
    if not _DEVNODE.fullmatch(devnode) or "/../" in devnode or devnode.endswith("/.."):
        raise InputError(f"{devnode!r} is not a device node under /dev")


def _filesystem(fs_type: str) -> tuple[str, tuple[str, ...]]:
    found = FILESYSTEMS.get(fs_type.lower())
    if found is None:
        raise InputError(
            f"the volume's filesystem {fs_type!r} is not one the agent mounts",
            remedy=f"recorders use one of {', '.join(sorted(FILESYSTEMS))}; "
            "copy other media with 'evidence-agent ingest' from a directory",
        )
    return found


# -- running them ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stderr: str


Runner = Callable[[Sequence[str]], CommandResult]


def run_command(command: Sequence[str]) -> CommandResult:
    """Run a mount tool without a shell; errors starting it become StorageError."""
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
            timeout=_COMMAND_TIMEOUT_SECONDS,
        )
    except FileNotFoundError as e:
        raise StorageError(
            f"{command[0]} is not installed",
            remedy="install util-linux (apt-get install util-linux)",
        ) from e
    except subprocess.TimeoutExpired as e:
        raise StorageError(
            f"{command[0]} did not finish within {_COMMAND_TIMEOUT_SECONDS} s: {' '.join(command)}",
            remedy="the device may be failing; unplug it and check the kernel log (journalctl -k)",
        ) from e
    except OSError as e:
        raise StorageError(f"cannot run {command[0]}: {e}") from e
    return CommandResult(done.returncode, done.stderr.strip())


def classify_mount_failure(devnode: str, result: CommandResult) -> InputError | StorageError:
    """Turn mount(8)'s complaint into an error for the user: the volume's fault, or the station's."""
    text = result.stderr.lower()
    message = f"cannot mount {devnode}: {_summary(result, 'mount')}"
    if "permission denied" in text or "must be superuser" in text or "only root" in text:
        return StorageError(
            message,
            remedy="the agent needs CAP_SYS_ADMIN to mount; run it from systemd/evidence-agent.service",
        )
    if "unknown filesystem type" in text:
        return StorageError(
            message, remedy="install the filesystem's kernel module (e.g. exfat) on this station"
        )
    if "does not exist" in text or "no such file" in text or "no medium" in text:
        return InputError(message, remedy="the device was unplugged; dock it again")
    # Bad superblock, wrong type, I/O errors: the volume itself cannot be read.
    return InputError(
        message,
        remedy="the recorder's storage may be damaged; check it with the vendor's tool "
        "(nothing was written to it)",
    )


class SystemMounter:
    """Runs mount(8)/umount(8) into a private mount root (mode 0700, owned by the agent's user)."""

    def __init__(self, mount_root: Path = DEFAULT_MOUNT_ROOT, runner: Runner = run_command) -> None:
        self.mount_root = mount_root
        self._run = runner

    def mount(self, devnode: str, device_id: str, *, fs_type: str | None = None) -> Path:
        command_target = self.mount_root / mount_point_name(device_id)
        command = build_mount_command(devnode, command_target, fs_type)
        self._prepare_root()
        if os.path.ismount(command_target):
            # Left over from a crash; the same device id means the same volume slot.
            logger.warning("unmounting stale mount %s before mounting %s", command_target, devnode)
            self.unmount(command_target)
        try:
            command_target.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create mount point {command_target}: {e}") from e
        result = self._run(command)
        if result.returncode != 0:
            _remove_empty_dir(command_target)
            raise classify_mount_failure(devnode, result)
        logger.info("mounted %s read-only at %s", devnode, command_target)
        return command_target

    def unmount(self, path: Path) -> None:
        if path.parent != self.mount_root:
            raise InputError(f"{path} is not a mount point under {self.mount_root}")
        if path.is_dir() and os.path.ismount(path):
            result = self._run(build_umount_command(path))
            if result.returncode != 0 and "busy" in result.stderr.lower():
                # A device unplugged mid-copy can leave the mount busy until its files close.
                logger.warning("%s is busy; detaching it lazily", path)
                result = self._run(build_umount_command(path, lazy=True))
            if result.returncode != 0 and "not mounted" not in result.stderr.lower():
                raise StorageError(
                    f"cannot unmount {path}: {_summary(result, 'umount')}",
                    remedy=f"close anything using it (fuser -m {path}) and run umount {path}",
                )
        _remove_empty_dir(path)

    def _prepare_root(self) -> None:
        """Create the mount root 0700 and refuse one another user could reach into."""
        try:
            self.mount_root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(self.mount_root)
        except OSError as e:
            raise StorageError(f"cannot create the mount root {self.mount_root}: {e}") from e
        if not stat.S_ISDIR(info.st_mode):
            raise StorageError(f"the mount root {self.mount_root} is not a directory")
        if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise StorageError(
                f"the mount root {self.mount_root} is open to other users "
                f"(mode {stat.S_IMODE(info.st_mode):o}, owner {info.st_uid})",
                remedy=f"chown the agent's user and chmod 700 {self.mount_root}",
            )


def _summary(result: CommandResult, tool: str) -> str:
    """One line of a tool's complaint, without util-linux's "dmesg(1) may have more" hint."""
    for line in result.stderr.splitlines():
        line = line.strip()
        if line and not line.startswith("dmesg("):
            return line
    return f"{tool} exited with {result.returncode}"


def _remove_empty_dir(path: Path) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:
        logger.warning("could not remove mount point %s: %s", path, e)


class DirectoryMounter:
    """Test double: "mounting" a device returns a directory registered for its device id.

    A device with no directory fails like an unmountable volume (InputError).
    """

    def __init__(self, volumes: Mapping[str, Path] | None = None) -> None:
        self._lock = threading.Lock()
        self._volumes: dict[str, Path] = dict(volumes or {})
        self._mounted: dict[Path, str] = {}
        self.calls: list[tuple[str, str]] = []  # ("mount", device_id) / ("unmount", path)

    def add(self, device_id: str, directory: Path) -> None:
        with self._lock:
            self._volumes[device_id] = directory

    def remove(self, device_id: str) -> None:
        """Forget a device, as if it had been unplugged: the next mount fails."""
        with self._lock:
            self._volumes.pop(device_id, None)

    @property
    def mounted(self) -> dict[Path, str]:
        """Directory -> device id of what is mounted now."""
        with self._lock:
            return dict(self._mounted)

    def mount(self, devnode: str, device_id: str, *, fs_type: str | None = None) -> Path:
        if fs_type is not None:
            mount_options(fs_type)  # the same refusal of unknown filesystems as the real one
        with self._lock:
            self.calls.append(("mount", device_id))
            directory = self._volumes.get(device_id)
            if directory is None or not directory.is_dir():
                raise InputError(
                    f"cannot mount {devnode}: no volume for device {device_id}",
                    remedy="the device was unplugged; dock it again",
                )
            self._mounted[directory] = device_id
            return directory

    def unmount(self, path: Path) -> None:
        with self._lock:
            self.calls.append(("unmount", str(path)))
            self._mounted.pop(path, None)
