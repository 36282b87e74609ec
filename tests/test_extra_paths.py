"""service.disk.extra_paths: ComfyUI's extra_model_paths.yaml, read from real files on real folders.

The reference is ComfyUI's own reader: `utils/extra_config.py` `load_extra_path_config` (which
sections and keys it reads, where it expands, how it joins) and `folder_paths.py`
`add_model_folder_path` / `map_legacy` (which folder kind a key names).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.disk.extra_paths import load_extra_model_paths
from service.disk.scan import FolderSource
from service.errors import ConfigError

from .conftest import StartClient, get_map
from .helpers import catalog, entry, touch, write_json

EXAMPLE = """
comfyui:
    base_path: {base}
    is_default: true
    checkpoints: |
        models/checkpoints/
        other/checkpoints
    unet: models/unet
    custom_nodes: custom_nodes/
a111:
    base_path: relative/webui
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: models/ESRGAN
"""


def write_yaml(folder: Path, text: str, name: str = "extra_model_paths.yaml") -> Path:
    """A real YAML file in a real folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_comfyuis_example_file(tmp_path: Path) -> None:
    """load_extra_path_config: base_path joins each line; a relative base_path is taken from the
    YAML file's folder; is_default only orders ComfyUI's search; custom_nodes holds no models."""
    yaml_file = write_yaml(tmp_path / "config", EXAMPLE.format(base=tmp_path / "pod"))
    assert load_extra_model_paths(yaml_file) == [
        FolderSource(f"{tmp_path}/pod/models/checkpoints", "checkpoints"),
        FolderSource(f"{tmp_path}/pod/other/checkpoints", "checkpoints"),
        FolderSource(f"{tmp_path}/pod/models/unet", "diffusion_models"),
        FolderSource(f"{tmp_path}/config/relative/webui/models/Lora", "loras"),
        FolderSource(f"{tmp_path}/config/relative/webui/models/LyCORIS", "loras"),
        FolderSource(f"{tmp_path}/config/relative/webui/models/ESRGAN", "upscale_models"),
    ]


def test_variables_and_home_are_expanded_in_base_path_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_extra_path_config: os.path.expandvars(os.path.expanduser(base_path)); each folder's
    lines are joined to it as written, with nothing expanded."""
    monkeypatch.setenv("POD", str(tmp_path / "pod"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yaml_file = write_yaml(tmp_path, "a:\n  base_path: $POD/models\n  loras: $POD/loras\nb:\n  base_path: ~/comfy\n  vae: ~/vae\n")
    assert load_extra_model_paths(yaml_file) == [
        FolderSource(f"{tmp_path}/pod/models/$POD/loras", "loras"),  # where ComfyUI looks too
        FolderSource(f"{tmp_path}/home/comfy/~/vae", "vae"),
    ]


def test_without_base_path_lines_are_taken_from_the_yaml_files_folder(tmp_path: Path) -> None:
    """load_extra_path_config: without base_path, a relative line is abspath(join(yaml_dir, line));
    an absolute one stays; empty lines are skipped."""
    yaml_file = write_yaml(tmp_path / "conf", f"x:\n  loras: |\n    one\n\n    {tmp_path}/abs/two\n    ../three\n")
    assert load_extra_model_paths(yaml_file) == [
        FolderSource(f"{tmp_path}/conf/one", "loras"),
        FolderSource(f"{tmp_path}/abs/two", "loras"),
        FolderSource(f"{tmp_path}/three", "loras"),
    ]


def test_lines_are_used_as_written(tmp_path: Path) -> None:
    """load_extra_path_config splits on newlines and skips only empty lines: a trailing space in a
    literal block stays part of the folder name, so ComfyUI would not find `models/Lora` there."""
    yaml_file = write_yaml(tmp_path, f"x:\n  base_path: {tmp_path}\n  loras: \"models/Lora  \\nmodels/LyCORIS\"\n")
    assert load_extra_model_paths(yaml_file) == [
        FolderSource(f"{tmp_path}/models/Lora  ", "loras"),
        FolderSource(f"{tmp_path}/models/LyCORIS", "loras"),
    ]


def test_legacy_keys_are_mapped_as_map_legacy_maps_them_and_no_others(tmp_path: Path) -> None:
    """folder_paths.add_model_folder_path applies map_legacy: {"unet": "diffusion_models", "clip":
    "text_encoders"}. t2i_adapter is only one of the default controlnet folders, not a legacy name:
    under that key ComfyUI makes a folder kind of its own, which ControlNetLoader does not list."""
    yaml_file = write_yaml(tmp_path, "x:\n  base_path: /m\n  unet: u\n  clip: c\n  diffusion_models: d\n  t2i_adapter: t\n")
    assert [source.logical for source in load_extra_model_paths(yaml_file)] == [
        "diffusion_models", "text_encoders", "diffusion_models", "t2i_adapter",
    ]


async def test_a_t2i_adapter_key_is_not_the_controlnet_folder(start: StartClient, tmp_path: Path, models_dir: Path, catalog_dir: Path) -> None:
    """In the models folder itself, models/t2i_adapter is one of ComfyUI's controlnet folders
    (folder_paths.folder_names_and_paths["controlnet"]); a `t2i_adapter:` key in the YAML is not."""
    yaml_file = write_yaml(tmp_path / "conf", f"x:\n  base_path: {tmp_path / 'extra'}\n  t2i_adapter: adapters\n  controlnet: cn\n")
    touch(tmp_path / "extra" / "adapters" / "from_yaml_key.safetensors")
    touch(tmp_path / "extra" / "cn" / "from_controlnet_key.safetensors")
    touch(models_dir / "t2i_adapter" / "from_models_folder.safetensors")
    names = ["from_yaml_key.safetensors", "from_controlnet_key.safetensors", "from_models_folder.safetensors"]
    write_json(catalog_dir / "models.json", catalog(*(entry(i + 1, name, "controlnet") for i, name in enumerate(names))))
    client = await start(extra_model_paths=yaml_file)
    statuses = {item["file"]: item["status"] for item in (await get_map(client))["by_version"].values()}
    assert statuses == {names[0]: "missing", names[1]: "present", names[2]: "present"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("x:\n  loras:\n    - one\n    - two\n", "'loras' in section 'x' is a list"),
        ("x:\n  loras:\n", "'loras' in section 'x' is empty"),
        ("x:\n  loras: 5\n", "'loras' in section 'x' is a number"),
        ("x:\n  loras: {a: b}\n", "'loras' in section 'x' is a mapping"),
        ("x:\n  custom_nodes: [a]\n", "'custom_nodes' in section 'x' is a list"),
        ("x:\n  base_path:\n  loras: l\n", "'base_path' in section 'x' is empty"),
        ("x:\n  base_path: [a]\n  loras: l\n", "'base_path' in section 'x' is a list"),
        ("x: some text\n", "section 'x' is text"),
        ("x: [a, b]\n", "section 'x' is a list"),
        ("- just\n- a list\n", "must hold sections"),
        ("a: [unclosed", "not valid YAML"),
        ("a:\n  b: [1,\n c: d\n", "line 4, column 1: expected ',' or ']'"),  # where PyYAML found it
        ("a: b\n\tc: d\n", "line 2, column 1: found character '\\t' that cannot start any token"),
    ],
)
def test_what_stops_comfyui_stops_the_start_with_one_sentence(tmp_path: Path, text: str, problem: str) -> None:
    """load_extra_path_config calls .split("\\n") on every folder value and expanduser on base_path,
    and indexes every section: a list, a number, an empty value or a section that is not a mapping
    raises there and ComfyUI does not start. So this service refuses the file, saying where."""
    yaml_file = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_extra_model_paths(yaml_file)
    assert problem in str(caught.value)
    assert str(yaml_file) in str(caught.value)


def test_a_list_error_says_how_comfyui_wants_it(tmp_path: Path) -> None:
    yaml_file = write_yaml(tmp_path, "x:\n  loras:\n    - one\n")
    with pytest.raises(ConfigError, match=r"one path per line.*loras: \|"):
        load_extra_model_paths(yaml_file)


@pytest.mark.parametrize("text", ["x:\n", "x:\ny:\n  loras: l\n", "# everything commented out\n", ""])
def test_what_comfyui_skips_is_skipped(tmp_path: Path, text: str) -> None:
    """load_extra_path_config skips a section that is empty (`if conf is None: continue`). An empty
    file (or one of comments) holds nothing; ComfyUI would stop on it, this service reads no folders."""
    yaml_file = write_yaml(tmp_path, text)
    assert load_extra_model_paths(yaml_file) == ([FolderSource(f"{tmp_path}/l", "loras")] if "loras" in text else [])


def test_several_files_in_order_without_repeats(tmp_path: Path) -> None:
    """ComfyUI's --extra-model-paths-config takes several files, read in order; a folder already
    listed for a kind is not added twice (add_model_folder_path)."""
    first = write_yaml(tmp_path / "a", f"x:\n  base_path: {tmp_path}\n  loras: shared\n")
    second = write_yaml(tmp_path / "b", f"y:\n  base_path: {tmp_path}\n  loras: |\n    shared\n    own\n")
    assert load_extra_model_paths((first, second)) == [
        FolderSource(f"{tmp_path}/shared", "loras"),
        FolderSource(f"{tmp_path}/own", "loras"),
    ]


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read") as caught:
        load_extra_model_paths(tmp_path / "nowhere.yaml")
    assert str(tmp_path / "nowhere.yaml") in str(caught.value)
