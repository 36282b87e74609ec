"""docker-compose.yml on a fresh machine: the init step gives the folders Docker and a root
ComfyUI create as root to the catalog's PUID:PGID (folders only, never files, never a folder
someone else owns), and the catalog runs as that user after it. The step's own shell command
is run here on real folders, with the container paths pointed at temp folders."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from service.settings import SETTINGS_HELP

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def interpolated(text: str, env: dict[str, str]) -> str:
    """What Compose makes of `${NAME:-default}` and `$$` in a value."""
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda match: env.get(match.group(1)) or match.group(2), text)
    return text.replace("$$", "$")


def test_the_catalog_runs_as_puid_pgid_after_init_and_comfyui_is_current() -> None:
    catalog, comfyui, init = SERVICES["catalog"], SERVICES["comfyui"], SERVICES["init"]
    assert catalog["user"] == "${PUID:-1000}:${PGID:-1000}"
    for service in (catalog, comfyui):
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert init["user"] == "0:0" and init["restart"] == "no" and init["network_mode"] == "none"
    assert init["image"] == catalog["image"]  # no other image to pull
    assert "cu124" not in comfyui["image"] and ":cu128-slim" in comfyui["image"]  # RTX 50-series needs CUDA 12.8


@pytest.mark.skipif(os.getuid() != 0, reason="giving folders to another user needs root, as the init step has")
def test_the_init_step_gives_root_made_folders_to_puid_and_touches_nothing_else(tmp_path: Path) -> None:
    models, catalogs = tmp_path / "models", tmp_path / "catalogs"
    (models / "loras").mkdir(parents=True)  # made by root (Docker, ComfyUI)
    (models / "mine").mkdir()
    os.chown(models / "mine", 4321, 4321)  # the user's own folder
    (models / "loras" / "a.safetensors").write_bytes(b"x")  # a file ComfyUI wrote as root
    catalogs.mkdir()
    (catalogs / "models.json").write_text("{}")
    command = interpolated(SERVICES["init"]["command"][0], {"PUID": "1234", "PGID": "2345"})
    command = command.replace("/data/catalogs", str(catalogs)).replace("/models", str(models))
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    owner = lambda path: (path.stat().st_uid, path.stat().st_gid)  # noqa: E731
    assert owner(models) == owner(models / "loras") == owner(models / "checkpoints") == (1234, 2345)
    assert (models / "diffusion_models").is_dir() and (models / "embeddings").is_dir()  # where downloads go, made
    assert owner(models / "mine") == (4321, 4321)  # someone else's: left alone
    assert owner(models / "loras" / "a.safetensors") == (0, 0)  # files are never touched
    assert owner(catalogs) == owner(catalogs / "models.json") == (1234, 2345)
    assert "1234:2345" in done.stdout


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / "deploy" / ".env.example").read_text()
    listed = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    missing = {name for name, _default, _meaning in SETTINGS_HELP} - listed
    assert not missing, f"deploy/.env.example lacks {sorted(missing)}"
    compose_variables = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    assert compose_variables - listed == set(), "every variable docker-compose.yml reads is in .env.example"
