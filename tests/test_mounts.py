"""service.disk.mounts: which watched folders `auto` polls, judged from a /proc/mounts text."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.disk.mounts import (
    filesystem_of,
    is_network_fs,
    network_paths,
    parse_mounts,
)

# As /proc/mounts reads inside a Docker Desktop container (macOS, virtiofs with the fakeowner
# layer; Windows, 9p), in WSL, in VMs with shared folders, and with a share mounted inside a
# local models folder.
MOUNTS = """\
overlay / overlay rw,relatime,lowerdir=/var/lib/docker/l 0 0
/dev/vda1 /etc/hosts ext4 rw,relatime 0 0
mac_models /models virtiofs rw,relatime 0 0
fakeowner /desktop/models fakeowner rw,nosuid,nodev,relatime,fakeowner 0 0
grpcfuse /grpc fuse.grpcfuse rw,nosuid,nodev,relatime 0 0
C:\\134 /mnt/c 9p rw,noatime,aname=drvfs;path=C:\\;uid=1000 0 0
D: /mnt/d drvfs rw,noatime 0 0
models /media/sf_models vboxsf rw,nodev,relatime 0 0
none /media/psf/models prl_fs rw,nosuid,nodev 0 0
/dev/sdb1 /local ext4 rw,relatime 0 0
nas:/export/loras /local/models/loras nfs4 rw,relatime 0 0
/dev/sdc1 /with\\040space ext4 rw 0 0
nas:/x /with\\040space/new\\012line nfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/models/loras", "virtiofs"),  # Docker Desktop shares the host's folder this way
        ("/desktop/models/x", "fakeowner"),  # Docker Desktop's ownership layer over virtiofs
        ("/grpc/models", "fuse.grpcfuse"),  # Docker Desktop's older gRPC FUSE sharing
        ("/mnt/c/models", "9p"),  # WSL2's Windows drives
        ("/mnt/d/models", "drvfs"),  # WSL1's Windows drives
        ("/media/sf_models", "vboxsf"),  # VirtualBox shared folders
        ("/media/psf/models", "prl_fs"),  # Parallels shared folders
    ],
)
def test_host_shares_are_polled(path: str, fstype: str) -> None:
    """Changes made on the host side of these shares send no inotify event inside."""
    mounts = parse_mounts(MOUNTS)
    assert filesystem_of(path, mounts) == fstype
    assert is_network_fs(fstype)


@pytest.mark.parametrize("path", ["/", "/etc/hosts", "/local/models", "/local/models/lorasx"])
def test_local_filesystems_are_not(path: str) -> None:
    assert not is_network_fs(filesystem_of(path, parse_mounts(MOUNTS)))


def test_escaped_mount_points_are_read_as_the_kernel_wrote_them() -> None:
    """/proc/mounts writes space, tab, newline and backslash in octal (\\040, \\011, \\012, \\134)."""
    points = [point for point, _ in parse_mounts(MOUNTS)]
    assert "/with space" in points and "/with space/new\nline" in points
    assert filesystem_of("/with space/new\nline/m", parse_mounts(MOUNTS)) == "nfs"


def test_a_share_mounted_inside_a_watched_folder_makes_it_polled(tmp_path: Path) -> None:
    """MODELS_DIR on a local disk with models/loras mounted from a NAS: the NAS's changes would
    never arrive as events, so the whole watched folder is polled."""
    models, other = tmp_path / "models", tmp_path / "other"
    (models / "loras").mkdir(parents=True)
    other.mkdir()
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nnas:/loras {models / 'loras'} nfs4 rw 0 0\nnas:/elsewhere /srv/nas nfs rw 0 0\n")
    assert network_paths([str(models), str(other)], str(mounts)) == [str(models)]


def test_no_mounts_file_means_no_polling(tmp_path: Path) -> None:
    assert network_paths([str(tmp_path)], str(tmp_path / "no-such-mounts")) == []
