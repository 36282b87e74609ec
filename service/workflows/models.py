"""The models a ComfyUI workflow loads, from either of its formats.

The UI format (`nodes[]` with `type` and `widgets_values`) and the API format (`{id:
{class_type, inputs}}`) are read the same way: for the core loaders, the inputs they load
from and the folder ComfyUI looks in; for any other node, every string value that names a
file with a model extension (its folder then unknown). Embeddings are read from prompt
text (`embedding:name`). Entries a workflow embeds as ComfyUI's templates do (`models`:
name, url, directory, hash) add where a file can be fetched from and its hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..disk.folders import canonical_folder
from ..disk.names import MODEL_EXTENSIONS
from ..map.entry import sha256_hex

MAX_NODES = 10_000  # in all the graph's nodes and subgraphs together
MAX_EMBEDDED = 5_000  # `models` entries read from one workflow
MAX_NEEDS = 10_000  # models found in one workflow (the answer lists the first 2,000)
EMBEDDING_EXTENSIONS = (".safetensors", ".pt", ".bin", ".pth")  # what ComfyUI tries for `embedding:name`
MAX_DEPTH = 8  # how deep a node's values are looked into
MAX_NAME_CHARS = 500
_EMBEDDING = re.compile(r"embedding:([^\s,()<>:\"']{1,200})", re.IGNORECASE)

# Core loaders: node type -> {input name: folder}. The UI format lists widget values in order,
# so each input's position among the widgets is kept too.
LOADERS: dict[str, tuple[tuple[str, str], ...]] = {
    "CheckpointLoaderSimple": (("ckpt_name", "checkpoints"),),
    "CheckpointLoader": (("config_name", "configs"), ("ckpt_name", "checkpoints")),
    "ImageOnlyCheckpointLoader": (("ckpt_name", "checkpoints"),),
    "unCLIPCheckpointLoader": (("ckpt_name", "checkpoints"),),
    "LoraLoader": (("lora_name", "loras"),),
    "LoraLoaderModelOnly": (("lora_name", "loras"),),
    "VAELoader": (("vae_name", "vae"),),
    "UNETLoader": (("unet_name", "diffusion_models"),),
    "CLIPLoader": (("clip_name", "text_encoders"),),
    "DualCLIPLoader": (("clip_name1", "text_encoders"), ("clip_name2", "text_encoders")),
    "TripleCLIPLoader": (("clip_name1", "text_encoders"), ("clip_name2", "text_encoders"), ("clip_name3", "text_encoders")),
    "QuadrupleCLIPLoader": tuple((f"clip_name{n}", "text_encoders") for n in range(1, 5)),
    "ControlNetLoader": (("control_net_name", "controlnet"),),
    "DiffControlNetLoader": (("control_net_name", "controlnet"),),
    "UpscaleModelLoader": (("model_name", "upscale_models"),),
    "CLIPVisionLoader": (("clip_name", "clip_vision"),),
    "StyleModelLoader": (("style_model_name", "style_models"),),
    "GLIGENLoader": (("gligen_name", "gligen"),),
    "HypernetworkLoader": (("hypernetwork_name", "hypernetworks"),),
    "PhotoMakerLoader": (("photomaker_model_name", "photomaker"),),
    "UnetLoaderGGUF": (("unet_name", "diffusion_models"),),
    "CLIPLoaderGGUF": (("clip_name", "text_encoders"),),
}
# The UI format's widgets of the loaders whose first model input is not their first widget.
_WIDGET_OFFSET = {"CheckpointLoader": 0}


@dataclass(slots=True)
class Need:
    """One model file a workflow loads."""

    name: str  # as the workflow names it: "sdxl/model.safetensors" (a subfolder, maybe)
    folder: str | None  # where ComfyUI looks (None: a node this service does not know)
    nodes: list[str] = field(default_factory=list)  # ids of the nodes that load it
    node_types: list[str] = field(default_factory=list)
    url: str | None = None  # from the workflow's own `models` entries
    sha256: str | None = None
    embedding: bool = False  # named in a prompt without its extension: any of EMBEDDING_EXTENSIONS

    @property
    def file(self) -> str:
        return self.name.rsplit("/", 1)[-1]


def is_model_name(value: object) -> bool:
    """A string that names a model file: a model extension, no control characters, not too long."""
    if not isinstance(value, str) or not 4 < len(value) <= MAX_NAME_CHARS or "\x00" in value:
        return False
    dot = value.rfind(".")
    return dot > 0 and value[dot:].lower() in MODEL_EXTENSIONS


def needs_of(workflow: object, prompt: object) -> list[Need]:
    """Every model file the graphs load (the UI graph first; the API graph adds what it lacks)."""
    found: dict[tuple[str, str | None], Need] = {}
    by_name: dict[str, Need] = {}
    for node_id, node_type, values in [*_ui_nodes(workflow), *_api_nodes(prompt)]:
        for name, folder in _models_of(node_type, values):
            _add(found, by_name, name, folder, node_id, node_type)
        for text in _texts(values):
            for match in _EMBEDDING.finditer(text):
                name = match.group(1).rstrip(".")
                if is_model_name(name):
                    _add(found, by_name, name, "embeddings", node_id, node_type)
                else:
                    _add(found, by_name, f"{name}.safetensors", "embeddings", node_id, node_type, embedding=True)
        if len(found) >= MAX_NEEDS:
            break
    for entry in _embedded_models(workflow)[:MAX_EMBEDDED]:
        name, folder = _clean(entry["name"]), canonical_folder(entry["directory"]) if entry.get("directory") else None
        need = found.get((name, folder)) or by_name.get(name)
        if need is None:
            if len(found) >= MAX_NEEDS:
                continue
            need = found[(name, folder)] = by_name[name] = Need(name, folder)
        need.url = need.url or entry.get("url")
        need.sha256 = need.sha256 or entry.get("sha256")
        need.folder = need.folder or folder
    return list(found.values())


def _add(
    found: dict[tuple[str, str | None], Need], by_name: dict[str, Need], name: str, folder: str | None, node_id: str, node_type: str, *, embedding: bool = False
) -> None:
    name = _clean(name)
    if not name or len(found) >= MAX_NEEDS:
        return
    key = (name.lower() if embedding else name, folder)
    need = found.get(key)
    if need is None:
        need = found[key] = Need(name, folder, embedding=embedding)
        by_name.setdefault(name, need)
    if node_id not in need.nodes:
        need.nodes.append(node_id)
    if node_type not in need.node_types:
        need.node_types.append(node_type)


def _clean(name: str) -> str:
    """A name as ComfyUI lists it: forward slashes, no leading "./" or "/" (a leading ".." is kept:
    "..hidden.safetensors" is a name of its own)."""
    name = name.replace("\\", "/").strip()
    while name.startswith(("./", "/")):
        name = name[2:] if name.startswith("./") else name[1:]
    return name[:MAX_NAME_CHARS]


def _models_of(node_type: str, values: dict[str, object] | list[object]) -> list[tuple[str, str | None]]:
    loads = LOADERS.get(node_type)
    if loads is not None:
        if isinstance(values, dict):
            picked = [(values.get(input_name), folder) for input_name, folder in loads]
        else:
            start = _WIDGET_OFFSET.get(node_type, 0)
            picked = [(values[start + n] if start + n < len(values) else None, folder) for n, (_input, folder) in enumerate(loads)]
        return [(value, folder) for value, folder in picked if is_model_name(value)]  # type: ignore[misc]
    return [(value, None) for value in _strings(values) if is_model_name(value)]


def _strings(values: object, depth: int = 0) -> list[str]:
    if isinstance(values, str):
        return [values]
    if depth >= MAX_DEPTH:
        return []
    items = values.values() if isinstance(values, dict) else values if isinstance(values, list) else ()
    found: list[str] = []
    for item in list(items)[:1000]:
        found.extend(_strings(item, depth + 1))
    return found


def _texts(values: object) -> list[str]:
    return [text for text in _strings(values) if "embedding:" in text.lower()]


def _ui_nodes(workflow: object) -> list[tuple[str, str, list[object] | dict[str, object]]]:
    if not isinstance(workflow, dict):
        return []
    nodes = workflow.get("nodes")
    groups = [nodes] if isinstance(nodes, list) else []
    definitions = workflow.get("definitions")  # group nodes and subgraphs keep their own nodes
    if isinstance(definitions, dict) and isinstance(definitions.get("subgraphs"), list):
        groups += [graph.get("nodes") for graph in definitions["subgraphs"] if isinstance(graph, dict) and isinstance(graph.get("nodes"), list)]
    found = []
    for node in [node for group in groups for node in group[:MAX_NODES]][:MAX_NODES]:
        if isinstance(node, dict) and isinstance(node.get("type"), str):
            values = node.get("widgets_values")
            if isinstance(values, list | dict):
                found.append((str(node.get("id", "?"))[:40], node["type"][:200], values))
    return found


def _api_nodes(prompt: object) -> list[tuple[str, str, dict[str, object]]]:
    if not isinstance(prompt, dict):
        return []
    found = []
    for node_id, node in list(prompt.items())[:MAX_NODES]:
        if isinstance(node, dict) and isinstance(node.get("class_type"), str) and isinstance(node.get("inputs"), dict):
            found.append((str(node_id)[:40], node["class_type"][:200], node["inputs"]))
    return found


def _embedded_models(workflow: object) -> list[dict[str, str]]:
    """The `models` entries a workflow carries (at its top, or in its nodes' properties), cleaned."""
    if not isinstance(workflow, dict):
        return []
    lists = [workflow.get("models")]
    nodes = workflow.get("nodes")
    for node in nodes[:MAX_NODES] if isinstance(nodes, list) else ():
        if isinstance(node, dict) and isinstance(node.get("properties"), dict):
            lists.append(node["properties"].get("models"))
    found: list[dict[str, str]] = []
    for items in lists:
        if len(found) >= MAX_EMBEDDED:
            break
        for item in items[:MAX_EMBEDDED] if isinstance(items, list) else ():
            if not isinstance(item, dict) or not is_model_name(item.get("name")):
                continue
            url = item.get("url")
            directory = item.get("directory")
            sha = item.get("hash") if str(item.get("hash_type", "sha256")).lower() == "sha256" else None
            found.append({
                "name": item["name"],
                "url": url if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) <= 2000 else None,
                "directory": directory if isinstance(directory, str) and 0 < len(directory) <= 200 and _relative(directory) else None,
                "sha256": sha256_hex(sha),
            })
    return found


def _relative(directory: str) -> bool:
    """A folder named relative to the models folder: no root, drive, backslash or `..`."""
    return not directory.startswith("/") and ":" not in directory and "\\" not in directory and ".." not in directory.split("/")
