"""The mount port: command lines as plain values, SystemMounter with a recording runner, DirectoryMounter."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from evidence_agent.adapters.mounter import (
    CommandResult,
    DirectoryMounter,
    Mounter,
    SystemMounter,
    build_mount_command,
    build_umount_command,
    classify_mount_failure,
    mount_options,
    mount_point_name,
)
from evidence_agent.errors import InputError, StorageError


def test_vfat_is_mounted_read_only_hardened_and_owned_by_root() -> None:
    assert build_mount_command("/dev/sdb1", Path("/run/ea/mnt/x"), "vfat") == [
        "mount",
        "-t",
        "vfat",
        "-o",
        "ro,nosuid,nodev,noexec,uid=0,gid=0,fmask=0333,dmask=0222",
        "/dev/sdb1",
        "/run/ea/mnt/x",
    ]


@pytest.mark.parametrize("fs_type", ["vfat", "exfat", "ntfs", "ext4", "ext3", "ext2", None])
def test_every_mount_is_ro_nosuid_nodev_noexec(fs_type: str | None) -> None:
    assert mount_options(fs_type)[:4] == ("ro", "nosuid", "nodev", "noexec")


def test_ext4_does_not_replay_its_journal_and_ntfs_uses_ntfs3() -> None:
    assert "noload" in mount_options("ext4")
    assert build_mount_command("/dev/sdb1", Path("/m"), "ntfs")[1:3] == ["-t", "ntfs3"]


def test_unknown_type_gives_no_type_flag_and_base_options() -> None:
    assert build_mount_command("/dev/sdb1", Path("/m"), None) == [
        "mount",
        "-o",
        "ro,nosuid,nodev,noexec",
        "/dev/sdb1",
        "/m",
    ]


def test_unsupported_filesystem_is_refused() -> None:
    with pytest.raises(InputError, match="'squashfs' is not one the agent mounts"):
        build_mount_command("/dev/sdb1", Path("/m"), "squashfs")


@pytest.mark.parametrize("devnode", ["sdb1", "/dev/../etc/passwd", "/dev/sdb1 -o rw", "-oremount"])
def test_only_device_nodes_are_mounted(devnode: str) -> None:
    with pytest.raises(InputError, match="not a device node"):
        build_mount_command(devnode, Path("/m"), "vfat")


def test_umount_command() -> None:
    assert build_umount_command(Path("/m/x")) == ["umount", "/m/x"]
    assert build_umount_command(Path("/m/x"), lazy=True) == ["umount", "--lazy", "/m/x"]


def test_mount_point_names_are_safe_and_distinct() -> None:
    a = mount_point_name("/dev/sdb1")
    b = mount_point_name("/dev/sdb-1")
    assert a.startswith("dev-sdb1-")
    assert a != b
    assert "/" not in mount_point_name("/sys/devices/../../x")
    assert mount_point_name("/dev/sdb1") == a


def test_mount_failures_are_classified() -> None:
    bad = classify_mount_failure(
        "/dev/sdb1", CommandResult(32, "mount: /m: wrong fs type, bad option, bad superblock")
    )
    assert isinstance(bad, InputError) and bad.remedy and "damaged" in bad.remedy
    denied = classify_mount_failure("/dev/sdb1", CommandResult(1, "mount: only root can do that"))
    assert isinstance(denied, StorageError) and "CAP_SYS_ADMIN" in str(denied)
    gone = classify_mount_failure(
        "/dev/sdb1", CommandResult(32, "mount: /m: special device /dev/sdb1 does not exist.")
    )
    assert isinstance(gone, InputError) and "unplugged" in str(gone)


class RecordingRunner:
    def __init__(self, *results: CommandResult) -> None:
        self.commands: list[list[str]] = []
        self._results = list(results)

    def __call__(self, command: Sequence[str]) -> CommandResult:
        self.commands.append(list(command))
        return self._results.pop(0) if self._results else CommandResult(0, "")


def test_system_mounter_runs_mount_into_a_private_root(tmp_path: Path) -> None:
    runner = RecordingRunner()
    mounter: Mounter = SystemMounter(tmp_path / "mnt", runner=runner)

    target = mounter.mount("/dev/sdb1", "/dev/sdb1", fs_type="exfat")

    assert target.parent == tmp_path / "mnt"
    assert (tmp_path / "mnt").stat().st_mode & 0o777 == 0o700
    assert target.is_dir()
    assert runner.commands == [build_mount_command("/dev/sdb1", target, "exfat")]


def test_failed_mount_leaves_no_mount_point(tmp_path: Path) -> None:
    runner = RecordingRunner(CommandResult(32, "mount: wrong fs type, bad superblock"))
    mounter = SystemMounter(tmp_path / "mnt", runner=runner)

    with pytest.raises(InputError, match="cannot mount /dev/sdb1"):
        mounter.mount("/dev/sdb1", "/dev/sdb1", fs_type="vfat")

    assert list((tmp_path / "mnt").iterdir()) == []


def test_mount_root_open_to_others_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "mnt"
    root.mkdir()
    os.chmod(root, 0o755)
    with pytest.raises(StorageError, match="open to other users"):
        SystemMounter(root, runner=RecordingRunner()).mount("/dev/sdb1", "x", fs_type="vfat")


def test_unmount_refuses_paths_outside_the_mount_root(tmp_path: Path) -> None:
    mounter = SystemMounter(tmp_path / "mnt", runner=RecordingRunner())
    with pytest.raises(InputError, match="not a mount point under"):
        mounter.unmount(Path("/"))


def test_unmount_of_a_directory_that_is_not_mounted_only_removes_it(tmp_path: Path) -> None:
    runner = RecordingRunner()
    mounter = SystemMounter(tmp_path / "mnt", runner=runner)
    target = mounter.mount("/dev/sdb1", "/dev/sdb1", fs_type="vfat")  # runner "mounts" nothing

    mounter.unmount(target)
    mounter.unmount(target)

    assert not target.exists()
    assert len(runner.commands) == 1  # only the mount: nothing was mounted to unmount


def test_directory_mounter_maps_device_ids_to_directories(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    mounter: Mounter = DirectoryMounter({"/dev/sdb1": volume})

    assert mounter.mount("/dev/sdb1", "/dev/sdb1", fs_type="vfat") == volume
    assert isinstance(mounter, DirectoryMounter) and mounter.mounted == {volume: "/dev/sdb1"}
    mounter.unmount(volume)
    assert mounter.mounted == {}


def test_directory_mounter_fails_like_an_unmountable_volume(tmp_path: Path) -> None:
    mounter = DirectoryMounter()
    with pytest.raises(InputError, match="no volume for device"):
        mounter.mount("/dev/sdc1", "/dev/sdc1")
    mounter.add("/dev/sdc1", tmp_path)
    mounter.remove("/dev/sdc1")
    with pytest.raises(InputError):
        mounter.mount("/dev/sdc1", "/dev/sdc1")


def test_mount_failure_message_is_one_line() -> None:
    error = classify_mount_failure(
        "/dev/sdb1",
        CommandResult(
            32,
            "mount: /m/x: unknown filesystem type 'exfat'.\n"
            "       dmesg(1) may have more information after failed mount system call.",
        ),
    )
    assert error.message == "cannot mount /dev/sdb1: mount: /m/x: unknown filesystem type 'exfat'."
    assert classify_mount_failure("/dev/sdb1", CommandResult(32, "")).message == (
        "cannot mount /dev/sdb1: mount exited with 32"
    )
