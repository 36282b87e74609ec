"""Tests for service.civitai.routing: CivitAI model-version bodies to catalog entries."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.civitai.routing import (
    MappedVersion,
    category_display_name,
    folder_for,
    lora_category,
    version_to_entry,
)
from service.errors import Invalid, Unprocessable, UpstreamError
from service.map.entry import MAX_ID

FIXTURES = Path(__file__).parent / "fixtures" / "civitai"


def load(name: str) -> dict[str, Any]:
    """One fixture body, fresh each call so tests may change it."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def minimal(**changes: Any) -> dict[str, Any]:
    """A small valid body; keyword arguments replace top-level keys."""
    body: dict[str, Any] = {
        "id": 100,
        "modelId": 200,
        "name": "v1.0",
        "baseModel": "SDXL 1.0",
        "usageControl": "Download",
        "trainedWords": [],
        "model": {"name": "Some Model", "type": "Checkpoint", "nsfw": False, "poi": False},
        "files": [
            {
                "id": 300,
                "name": "someModel_v10.safetensors",
                "type": "Model",
                "primary": True,
                "sizeKB": 7104000,
                "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
                "hashes": {"AutoV2": "ABCDEF0123", "SHA256": "ABCDEF0123" + "0" * 54},
                "downloadUrl": "https://civitai.com/api/download/models/100",
            }
        ],
    }
    body.update(changes)
    return body


def entry_of(body: object) -> dict[str, Any]:
    mapped = version_to_entry(body)
    assert mapped.entry is not None
    return mapped.entry


# ---- folder_for ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_type", "expected"),
    [
        ("Checkpoint", ("checkpoints", "checkpoints")),
        ("LORA", ("loras", "loras")),
        ("LoCon", ("loras", "loras")),
        ("DoRA", ("loras", "loras")),
        ("VAE", ("vae", "vae")),
        ("TextualInversion", ("embeddings", "embeddings")),
        ("Controlnet", ("controlnet", "controlnet")),
        ("Upscaler", ("upscalers", "upscale_models")),
        ("checkpoint", ("checkpoints", "checkpoints")),
        ("lora", ("loras", "loras")),
        ("LOCON", ("loras", "loras")),
        ("textualinversion", ("embeddings", "embeddings")),
        ("ControlNet", ("controlnet", "controlnet")),
        ("UPSCALER", ("upscalers", "upscale_models")),
        (" LoRA ", ("loras", "loras")),
        ("Hypernetwork", ("hypernetworks", "hypernetworks")),
        ("MotionModule", ("animatediff_models", "animatediff_models")),
    ],
)
def test_folder_for_supported_types(model_type: str, expected: tuple[str, str]) -> None:
    assert folder_for(model_type, "SDXL 1.0") == expected


@pytest.mark.parametrize(
    "model_type",
    [
        "AestheticGradient",
        "Poses",
        "Wildcards",
        "Workflows",
        "Detection",
        "Other",
        "Checkpoints",
        "LyCORIS",
    ],
)
def test_folder_for_refuses_other_types_naming_them(model_type: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        folder_for(model_type, None)
    assert caught.value.code == "unsupported_type"
    assert caught.value.status == 422
    assert repr(model_type) in caught.value.detail


@pytest.mark.parametrize("model_type", ["", "   "])
def test_folder_for_refuses_a_missing_type(model_type: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        folder_for(model_type, "Flux.1 D")
    assert caught.value.code == "unsupported_type"
    assert "no model type" in caught.value.detail


# CivitAI's base-model strings of the families ComfyUI loads from diffusion_models.
DIFFUSION_BASES = [
    "Flux.1 D",
    "Flux.1 S",
    "Flux.1 Krea",
    "Flux.1 Kontext",
    "Flux.2 D",
    "Flux.2 Klein 4B",
    "Wan Video 2.2 T2V-A14B",
    "Wan Video 2.2 I2V-A14B",
    "Wan Video 2.2 TI2V-5B",
    "Wan Video 14B i2v 480p",
    "Wan Video 1.3B t2v",
    "Wan Video 2.5 T2V",
    "Wan Video 2.5 I2V",
    "LTXV",
    "LTXV 2.5",
    "LTXV2",
    "LTX Video",
    "Hunyuan Video",
    "CogVideoX",
    "Mochi",
    "Chroma",
    "Qwen",
    "HiDream",
    "ZImageTurbo",
    "ZImageBase",
    "flux.1 d",
]
IMAGE_BASES = [
    None,
    "",
    "Hunyuan 1",
    "SDXL 1.0",
    "SD 1.5",
    "SD 3.5",
    "Illustrious",
    "Pony",
    "NoobAI",
    "Pony V7",
    "AuraFlow",
    "Lumina",  # without a file name that says diffusion-only: the all-in-one checkpoint
    "Other",
    "Fluxus Mix",  # a word that starts with "flux" is not the Flux family
    "Swan Lake",  # nor one that ends with "wan"
]


@pytest.mark.parametrize("base_model", DIFFUSION_BASES)
def test_checkpoints_of_diffusion_families_go_to_diffusion_models(base_model: str) -> None:
    assert folder_for("Checkpoint", base_model) == ("diffusion_models", "diffusion_models")


@pytest.mark.parametrize("base_model", IMAGE_BASES)
def test_other_checkpoints_stay_in_checkpoints(base_model: str | None) -> None:
    assert folder_for("Checkpoint", base_model) == ("checkpoints", "checkpoints")


@pytest.mark.parametrize(
    ("file_name", "folder"),
    [
        ("lumina_2.safetensors", "checkpoints"),  # ComfyUI's all-in-one Lumina 2 checkpoint
        ("lumina_2_model_bf16.safetensors", "diffusion_models"),  # its diffusion-only file
        ("NetaYumeLumina_unet_v35.safetensors", "diffusion_models"),
        ("netayume_lumina_dit-v3.safetensors", "diffusion_models"),
        ("NetaYumeLuminaAIO_v35.safetensors", "checkpoints"),
        (None, "checkpoints"),
    ],
)
def test_lumina_checkpoints_are_filed_by_what_the_file_is(file_name: str | None, folder: str) -> None:
    assert folder_for("Checkpoint", "Lumina", file_name) == (folder, folder)


def test_the_file_name_does_not_move_checkpoints_of_other_families() -> None:
    assert folder_for("Checkpoint", "SDXL 1.0", "sdxl_unet_only.safetensors") == ("checkpoints", "checkpoints")


@pytest.mark.parametrize("base_model", ["Flux.1 D", "Wan Video 14B i2v 480p", "LTXV"])
@pytest.mark.parametrize(("model_type", "expected"), [("LORA", ("loras", "loras")), ("VAE", ("vae", "vae"))])
def test_only_checkpoints_are_moved_by_family(base_model: str, model_type: str, expected: tuple[str, str]) -> None:
    assert folder_for(model_type, base_model) == expected


# ---- lora_category ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_model", "expected"),
    [
        ("Wan Video 14B i2v 480p", "wan_loras"),
        ("Wan Video 2.2 T2V-A14B", "wan_loras"),
        ("Wan Video 1.3B t2v", "wan_loras"),
        ("Flux.1 D", "flux_loras"),
        ("Flux.1 S", "flux_loras"),
        ("Flux.1 Krea", "flux_loras"),
        ("Flux.1 Kontext", "flux_loras"),
        ("SDXL 1.0", "sdxl_loras"),
        ("SDXL Lightning", "sdxl_loras"),
        ("SDXL Hyper", "sdxl_loras"),
        ("SDXL Turbo", "sdxl_loras"),
        ("Pony", "sdxl_loras"),
        ("Illustrious", "sdxl_loras"),
        ("NoobAI", "sdxl_loras"),
        ("SD 1.5", "sd15_loras"),
        ("SD 1.5 LCM", "sd15_loras"),
        ("SD 1.5 Hyper", "sd15_loras"),
        ("SD 1.4", "sd15_loras"),
        (None, "other_loras"),
        ("", "other_loras"),
        ("SD 3.5", "other_loras"),
        ("SD 2.1", "other_loras"),
        ("Hunyuan Video", "other_loras"),
        ("Hunyuan 1", "other_loras"),
        ("LTXV", "other_loras"),
        ("Other", "other_loras"),
        ("HiDream", "other_loras"),
        ("Qwen", "other_loras"),
        ("Pony V7", "other_loras"),  # AuraFlow-based, not an SDXL derivative
    ],
)
def test_lora_category(base_model: str | None, expected: str) -> None:
    assert lora_category(base_model) == expected


# ---- category_display_name ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category_id", "expected"),
    [
        ("checkpoints", "Checkpoints"),
        ("diffusion_models", "Diffusion Models"),
        ("upscalers", "Upscalers"),
        ("sdxl_loras", "SDXL LoRAs"),
        ("sd15_loras", "SD 1.5 LoRAs"),
        ("wan_loras", "Wan LoRAs"),
        ("flux_loras", "Flux LoRAs"),
        ("other_loras", "Other LoRAs"),
        ("loras", "LoRAs"),
        ("vae", "VAE"),
        ("embeddings", "Embeddings"),
        ("controlnet", "ControlNet"),
        ("text_encoders", "Text Encoders"),
        ("clip_vision", "Clip Vision"),
        ("style", "Style"),
    ],
)
def test_category_display_name(category_id: str, expected: str) -> None:
    assert category_display_name(category_id) == expected


# ---- fixtures end to end ----------------------------------------------------------------------------


def test_illustrious_checkpoint_maps_to_the_primary_model_file() -> None:
    body = load("checkpoint_illustrious")
    mapped = version_to_entry(body)
    assert mapped == MappedVersion(
        entry={
            "name": "WAI-illustrious-SDXL v16.0 [Illustrious FP16]",
            "file": "waiIllustriousSDXL_v160.safetensors",
            "dest": "checkpoints",
            "source": "civitai",
            "civitai_version_id": 2514310,
            "civitai_model_id": 827184,
            "civitai_file_id": 2402203,
            "size_gb": 6.775,
            "base_model": "Illustrious",
            "hash": body["files"][1]["hashes"]["SHA256"],
            "tags": [],
        },
        category="checkpoints",
        restricted_reason=None,
    )


def test_flux_checkpoint_goes_to_diffusion_models() -> None:
    mapped = version_to_entry(load("checkpoint_flux_dev"))
    assert mapped.category == "diffusion_models"
    assert mapped.entry is not None
    assert mapped.entry["dest"] == "diffusion_models"
    assert mapped.entry["file"] == "jibMixFlux_v8Accentueight.safetensors"
    assert mapped.entry["name"] == "Jib Mix Flux v8 - Accentueight [Flux.1 D FP8]"


def test_locon_keeps_cleaned_trigger_words_and_has_no_fp() -> None:
    mapped = version_to_entry(load("locon_sdxl"))
    assert mapped.category == "loras"
    assert mapped.entry is not None
    assert mapped.entry["dest"] == "loras"
    assert mapped.entry["trigger_words"] == ["detailed hands", "hand focus"]
    assert mapped.entry["name"] == "Detailed Hands XL v1.0 [SDXL 1.0]"
    assert lora_category(mapped.entry["base_model"]) == "sdxl_loras"


def test_wan_lora_maps_to_loras_and_promotes_to_wan_loras() -> None:
    mapped = version_to_entry(load("wan_lora"))
    assert mapped.category == "loras"
    assert mapped.entry is not None
    assert mapped.entry["dest"] == "loras"
    assert mapped.entry["trigger_words"] == ["sq41sh squish effect"]
    assert lora_category(mapped.entry["base_model"]) == "wan_loras"


def test_generation_only_version_is_restricted() -> None:
    mapped = version_to_entry(load("generation_only"))
    assert mapped == MappedVersion(
        entry=None,
        category=None,
        restricted_reason=(
            "This version's usage control is 'Generation': "
            "CivitAI allows it only for on-site generation, not download."
        ),
    )


def test_version_with_only_training_data_and_archive_has_no_model_file() -> None:
    with pytest.raises(Unprocessable) as caught:
        version_to_entry(load("training_data_only"))
    assert caught.value.code == "no_model_file"
    assert "745112" in caught.value.detail
    assert "'Training Data'" in caught.value.detail


# ---- entry fields ----------------------------------------------------------------------------------


def test_entry_keys_are_in_catalog_order() -> None:
    entry = entry_of(minimal(trainedWords=["a"]))
    assert list(entry) == [
        "name",
        "file",
        "dest",
        "source",
        "civitai_version_id",
        "civitai_model_id",
        "civitai_file_id",
        "size_gb",
        "base_model",
        "trigger_words",
        "hash",
        "tags",
    ]


def test_optional_keys_are_omitted_when_empty() -> None:
    body = minimal(trainedWords=["  ", ""])
    del body["files"][0]["hashes"]["SHA256"]
    assert list(entry_of(body)) == [
        "name",
        "file",
        "dest",
        "source",
        "civitai_version_id",
        "civitai_model_id",
        "civitai_file_id",
        "size_gb",
        "base_model",
        "tags",
    ]


@pytest.mark.parametrize("value", ["../../x", "", "ABCDEF", "G" * 64, "A" * 63 + " ", "A" * 65])
def test_a_sha256_that_is_not_one_is_left_out(value: str) -> None:
    body = minimal()
    body["files"][0]["hashes"]["SHA256"] = value
    assert "hash" not in entry_of(body)


@pytest.mark.parametrize(
    ("size_kb", "expected"),
    [(6775430, 6.775), (6775430.35, 6.775), (1000000, 1.0), (1048576, 1.049), (223100.46875, 0.223), (0, 0.0), (400, 0.0)],
)
def test_size_gb(size_kb: float, expected: float) -> None:
    """sizeKB / 1,000,000, as in the contract's catalog example and the catalogs users already have."""
    body = minimal()
    body["files"][0]["sizeKB"] = size_kb
    assert entry_of(body)["size_gb"] == expected


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([" a ", "", "b"], ["a", "b"]),
        (["\tsq41sh squish effect\n"], ["sq41sh squish effect"]),
        (["x", "x"], ["x", "x"]),
    ],
)
def test_trigger_words_are_stripped_and_empties_dropped(words: list[str], expected: list[str]) -> None:
    assert entry_of(minimal(trainedWords=words))["trigger_words"] == expected


@pytest.mark.parametrize("words", [None, [], ["", "   "]])
def test_no_trigger_words_means_no_key(words: list[str] | None) -> None:
    assert "trigger_words" not in entry_of(minimal(trainedWords=words))


def test_no_trained_words_key_means_no_trigger_words() -> None:
    body = minimal()
    del body["trainedWords"]
    assert "trigger_words" not in entry_of(body)


def test_hash_is_the_sha256_as_given() -> None:
    body = minimal()
    body["files"][0]["hashes"]["SHA256"] = "deadBEEF" * 8
    assert entry_of(body)["hash"] == "deadBEEF" * 8


def test_ids_source_and_tags() -> None:
    entry = entry_of(minimal())
    assert (entry["civitai_version_id"], entry["civitai_model_id"], entry["civitai_file_id"]) == (100, 200, 300)
    assert entry["source"] == "civitai"
    assert entry["tags"] == []


def test_missing_base_model_is_kept_as_none() -> None:
    assert entry_of(minimal(baseModel=None))["base_model"] is None


# ---- display name ----------------------------------------------------------------------------------


def _named(model: str | None, version: str | None, base: str | None, fp: str | None) -> str:
    body = minimal(name=version, baseModel=base)
    body["model"]["name"] = model
    body["files"][0]["metadata"]["fp"] = fp
    return entry_of(body)["name"]


@pytest.mark.parametrize(
    ("model", "version", "base", "fp", "expected"),
    [
        ("WAI-illustrious-SDXL", "v16.0", "Illustrious", "fp16", "WAI-illustrious-SDXL v16.0 [Illustrious FP16]"),
        ("Pony Diffusion V6 XL", "pony diffusion v6 xl", "Pony", "fp16", "Pony Diffusion V6 XL [Pony FP16]"),
        ("Juggernaut XL", "  JUGGERNAUT XL ", "SDXL 1.0", "fp16", "Juggernaut XL [SDXL 1.0 FP16]"),
        ("Detail Tweaker", "v1.0", "SD 1.5", None, "Detail Tweaker v1.0 [SD 1.5]"),
        ("Detail Tweaker", "v1.0", "SD 1.5", "", "Detail Tweaker v1.0 [SD 1.5]"),
        ("Detail Tweaker", "v1.0", None, "bf16", "Detail Tweaker v1.0 [BF16]"),
        ("Detail Tweaker", "v1.0", None, None, "Detail Tweaker v1.0"),
        ("  Spaced   Out\tModel ", " v2   beta ", "Flux.1  D", "fp8", "Spaced Out Model v2 beta [Flux.1 D FP8]"),
        (None, "v3", "SDXL 1.0", None, "v3 [SDXL 1.0]"),
        (None, None, None, None, "CivitAI model version 100"),
    ],
)
def test_display_name(model: str | None, version: str | None, base: str | None, fp: str | None, expected: str) -> None:
    assert _named(model, version, base, fp) == expected


def test_display_name_without_metadata_has_no_fp() -> None:
    body = minimal()
    del body["files"][0]["metadata"]
    assert entry_of(body)["name"] == "Some Model v1.0 [SDXL 1.0]"


# ---- file choice -----------------------------------------------------------------------------------


def _file(file_id: int, kind: str, primary: bool | None = None) -> dict[str, Any]:
    file: dict[str, Any] = {
        "id": file_id,
        "name": f"file_{file_id}.safetensors",
        "type": kind,
        "sizeKB": 1024.0,
        "metadata": {"format": "SafeTensor", "fp": "fp16"},
        "hashes": {"SHA256": f"{file_id:064X}"},
    }
    if primary is not None:
        file["primary"] = primary
    return file


@pytest.mark.parametrize(
    ("files", "chosen"),
    [
        ([_file(1, "Training Data"), _file(2, "Model", True)], 2),
        ([_file(1, "Model"), _file(2, "Model", True)], 2),
        ([_file(1, "Training Data"), _file(2, "Model"), _file(3, "Model")], 2),
        ([_file(1, "Model", False), _file(2, "Model", False)], 1),
        ([_file(1, "Training Data", True), _file(2, "Model")], 2),
        ([_file(1, "Archive", True), _file(2, "Pruned Model")], 2),
        ([_file(1, "Pruned Model"), _file(2, "Model")], 2),
        ([_file(1, "Model"), _file(2, "Pruned Model", True)], 2),
        ([_file(1, "Config"), _file(2, "VAE"), _file(3, "Pruned Model")], 3),
        ([_file(1, "Negative", True), _file(2, "Model")], 2),
    ],
)
def test_file_choice(files: list[dict[str, Any]], chosen: int) -> None:
    assert entry_of(minimal(files=files))["civitai_file_id"] == chosen


@pytest.mark.parametrize(
    "files",
    [
        [],
        [_file(1, "Training Data", True)],
        [_file(1, "Training Data"), _file(2, "Archive")],
        [_file(1, "Config"), _file(2, "VAE", True), _file(3, "Negative")],
        [{"id": 1, "name": "x.safetensors", "sizeKB": 1.0}],
    ],
)
def test_no_usable_file_is_unprocessable(files: list[dict[str, Any]]) -> None:
    with pytest.raises(Unprocessable) as caught:
        version_to_entry(minimal(files=files))
    assert caught.value.code == "no_model_file"
    assert caught.value.status == 422


def _file_named(file: dict[str, Any], name: str) -> dict[str, Any]:
    return {**file, "name": name}


@pytest.mark.parametrize(
    ("files", "chosen"),
    [
        ([_file_named(_file(1, "Model", True), "pack.zip"), _file(2, "Pruned Model")], 2),
        ([_file_named(_file(1, "Model"), "x.onnx"), _file_named(_file(2, "Model"), "x.GGUF")], 2),
        ([_file_named(_file(1, "Model", True), "x.zip"), _file(2, "Model"), _file(3, "Model")], 2),
    ],
)
def test_a_file_comfyui_lists_is_chosen_before_one_it_does_not(files: list[dict[str, Any]], chosen: int) -> None:
    """Presence counts only what ComfyUI's loaders list (.safetensors, .ckpt, ..., .gguf): an entry
    for any other file could never show as present, and its download would never end."""
    assert entry_of(minimal(files=files))["civitai_file_id"] == chosen


@pytest.mark.parametrize("name", ["pack.zip", "model.onnx", "readme.txt", "model.safetensors.txt"])
def test_a_model_file_comfyui_would_not_list_is_unprocessable(name: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        version_to_entry(minimal(files=[_file_named(_file(1, "Model", True), name)]))
    assert caught.value.code == "no_model_file"
    assert repr(name) in caught.value.detail and ".safetensors" in caught.value.detail


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", ".hidden.safetensors", "x\x00.safetensors", "x.part", "a" * 239 + ".safetensors"]  # 251 bytes: no room for .part
)
def test_hostile_file_name_is_refused(name: str) -> None:
    body = minimal()
    body["files"][0]["name"] = name
    with pytest.raises(Invalid) as caught:
        version_to_entry(body)
    assert caught.value.code == "unsafe_file_name"
    assert "CivitAI file name" in caught.value.detail


def test_the_longest_name_a_download_can_write_is_taken() -> None:
    body = minimal()
    body["files"][0]["name"] = "a" * 238 + ".safetensors"  # 250 bytes, 255 with .part
    assert entry_of(body)["file"] == body["files"][0]["name"]


def test_a_file_on_disk_is_mapped_whatever_the_length_of_civitais_name_for_it() -> None:
    body = minimal()
    for name in ("a" * 243 + ".safetensors", "ä" * 130 + ".safetensors", "CON.safetensors"):  # no download could write these
        body["files"][0]["name"] = name
        assert version_to_entry(body, downloaded=False).entry is not None, name


# ---- restricted and unsupported ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "restricted"),
    [("Download", False), (None, False), ("download", False), ("Generation", True), ("InferenceOnly", True)],
)
def test_usage_control(usage: str | None, restricted: bool) -> None:
    mapped = version_to_entry(minimal(usageControl=usage))
    assert (mapped.entry is None) is restricted
    assert (mapped.restricted_reason is not None) is restricted
    assert (mapped.category is None) is restricted


def test_absent_usage_control_means_download() -> None:
    body = minimal()
    del body["usageControl"]
    assert version_to_entry(body).entry is not None


@pytest.mark.parametrize(
    ("usage", "reason"),
    [
        ("Generation", "This version's usage control is 'Generation': CivitAI allows it only for on-site generation"),
        ("InferenceOnly", "This version's usage control is 'InferenceOnly': CivitAI allows it only for inference"),
        ("SomethingNew", "This version's usage control is 'SomethingNew': CivitAI does not allow it to be downloaded."),
    ],
)
def test_restricted_reason_names_the_usage_control(usage: str, reason: str) -> None:
    reason_given = version_to_entry(minimal(usageControl=usage)).restricted_reason
    assert reason_given is not None
    assert reason_given.startswith(reason)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda body: body["model"].update(type="Workflows"),
        lambda body: body.update(files=[_file(1, "Training Data")]),
        lambda body: body["files"][0].update(name="../evil.safetensors"),
    ],
)
def test_restriction_is_checked_before_type_and_files(spoil: Callable[[dict[str, Any]], None]) -> None:
    body = minimal(usageControl="Generation")
    spoil(body)
    assert version_to_entry(body).restricted_reason is not None


@pytest.mark.parametrize("model_type", ["AestheticGradient", "Workflows", "Wildcards", "Poses", "Other", None])
def test_unsupported_type_is_refused_not_misfiled(model_type: str | None) -> None:
    body = minimal()
    body["model"]["type"] = model_type
    with pytest.raises(Unprocessable) as caught:
        version_to_entry(body)
    assert caught.value.code == "unsupported_type"
    if model_type is not None:
        assert repr(model_type) in caught.value.detail


def test_missing_model_type_is_unsupported() -> None:
    body = minimal()
    del body["model"]["type"]
    with pytest.raises(Unprocessable) as caught:
        version_to_entry(body)
    assert caught.value.code == "unsupported_type"


# ---- malformed bodies ---------------------------------------------------------------------------------


def _without(*path: str | int) -> Callable[[dict[str, Any]], None]:
    def spoil(body: dict[str, Any]) -> None:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return spoil


def _setting(value: Any, *path: str | int) -> Callable[[dict[str, Any]], None]:
    def spoil(body: dict[str, Any]) -> None:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return spoil


@pytest.mark.parametrize(
    ("spoil", "what"),
    [
        (_without("id"), "'id'"),
        (_setting("2514310", "id"), "'id'"),
        (_setting(True, "id"), "'id'"),
        (_setting(1.0, "id"), "'id'"),
        (_without("modelId"), "'modelId'"),
        (_setting(False, "modelId"), "'modelId'"),
        (_setting(None, "modelId"), "'modelId'"),
        (_setting(2**64 - 1, "modelId"), "'modelId'"),  # orjson reads it as an int; the map could never show it
        (_setting(MAX_ID + 1, "id"), "'id'"),
        (_setting(MAX_ID + 1, "files", 0, "id"), "'id'"),
        (_setting(7, "usageControl"), "'usageControl'"),
        (_without("model"), "'model'"),
        (_setting("Checkpoint", "model"), "'model'"),
        (_setting(3, "model", "type"), "'type'"),
        (_without("files"), "'files'"),
        (_setting({"0": {}}, "files"), "'files'"),
        (_setting(None, "files"), "'files'"),
        (_setting(["x.safetensors"], "files"), "files[0]"),
        (_setting(5, "baseModel"), "'baseModel'"),
        (_setting(["v1"], "name"), "'name'"),
        (_setting(1, "model", "name"), "'name'"),
        (_setting("a, b", "trainedWords"), "'trainedWords'"),
        (_setting(["a", 1], "trainedWords"), "'trainedWords'"),
        (_without("files", 0, "id"), "'id'"),
        (_setting(True, "files", 0, "id"), "'id'"),
        (_without("files", 0, "sizeKB"), "'sizeKB'"),
        (_setting("7104000", "files", 0, "sizeKB"), "'sizeKB'"),
        (_setting(True, "files", 0, "sizeKB"), "'sizeKB'"),
        (_setting(-1, "files", 0, "sizeKB"), "'sizeKB'"),
        (_setting(float("nan"), "files", 0, "sizeKB"), "'sizeKB'"),
        (_setting(1e308, "files", 0, "sizeKB"), "'sizeKB'"),
        (_setting(10**12, "files", 0, "sizeKB"), "'sizeKB'"),
        (_setting("fp16", "files", 0, "metadata"), "'metadata'"),
        (_setting(16, "files", 0, "metadata", "fp"), "'fp'"),
        (_setting(["SHA"], "files", 0, "hashes"), "'hashes'"),
        (_setting(123, "files", 0, "hashes", "SHA256"), "'SHA256'"),
    ],
)
def test_malformed_bodies_are_upstream_errors(spoil: Callable[[dict[str, Any]], None], what: str) -> None:
    body = minimal()
    spoil(body)
    with pytest.raises(UpstreamError) as caught:
        version_to_entry(body)
    assert caught.value.code == "upstream_bad_body"
    assert caught.value.status == 502
    assert caught.value.detail.startswith("CivitAI answered with a model version this service cannot read: ")
    assert what in caught.value.detail


@pytest.mark.parametrize("body", [None, [], "{}", 42, [minimal()]])
def test_a_body_that_is_not_an_object_is_an_upstream_error(body: object) -> None:
    with pytest.raises(UpstreamError) as caught:
        version_to_entry(body)
    assert caught.value.code == "upstream_bad_body"
    assert type(body).__name__ in caught.value.detail


def test_mapping_does_not_change_the_body() -> None:
    body = load("checkpoint_illustrious")
    before = copy.deepcopy(body)
    version_to_entry(body)
    assert body == before


@pytest.mark.parametrize(
    ("base_model", "file_name", "dest"),
    [
        ("Lumina", "lumina_2_model_bf16.safetensors", "diffusion_models"),
        ("Lumina", "lumina_2.safetensors", "checkpoints"),
        ("ZImageTurbo", "z_image_turbo_bf16.safetensors", "diffusion_models"),
        ("Flux.2 Klein 4B", "flux2_klein_4b.safetensors", "diffusion_models"),
    ],
)
def test_a_version_is_filed_by_its_family_and_file(base_model: str, file_name: str, dest: str) -> None:
    body = minimal(baseModel=base_model)
    body["files"][0]["name"] = file_name
    mapped = version_to_entry(body)
    assert mapped.category == dest and mapped.entry is not None and mapped.entry["dest"] == dest


@pytest.mark.parametrize(("model_type", "dest"), [("Hypernetwork", "hypernetworks"), ("MotionModule", "animatediff_models")])
def test_types_comfyui_has_a_folder_for_are_added_there(model_type: str, dest: str) -> None:
    body = minimal()
    body["model"]["type"] = model_type
    mapped = version_to_entry(body)
    assert mapped.entry is not None and mapped.entry["dest"] == dest and mapped.category == dest
