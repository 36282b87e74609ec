"""A tiny stand-in for CivitAI's model-version API, on loopback only, for deploy/schemathesis.sh.

    python deploy/fake_civitai.py --port 8765

`GET /api/v1/model-versions/{id}` answers, for ids below 1,000,000, a valid CivitAI body for
a downloadable SDXL LoRA whose file is `lora_{id}.safetensors`, except:
  - ids ending in 7: the same LoRA, but CivitAI allows it only for on-site generation
    (the service answers `restricted`);
  - ids ending in 9: a model type ComfyUI has no folder for (the service answers 422).
Every other id, and anything that is not a whole number, is 404, as on CivitAI.
"""

from __future__ import annotations

import argparse
from typing import Any

from aiohttp import web

LIMIT = 1_000_000


def model_version(version_id: int) -> dict[str, Any]:
    """A model-version body in CivitAI's shape."""
    model_id = 500_000 + version_id // 10
    return {
        "id": version_id,
        "modelId": model_id,
        "name": f"v{version_id}",
        "baseModel": "SDXL 1.0",
        "trainedWords": ["trigger"],
        "usageControl": "Generation" if version_id % 10 == 7 else "Download",
        "model": {"name": f"Fake LoRA {model_id}", "type": "Workflows" if version_id % 10 == 9 else "LORA"},
        "files": [
            {
                "id": version_id * 7,
                "name": f"lora_{version_id}.safetensors",
                "type": "Model",
                "primary": True,
                "sizeKB": 223000.5,
                "metadata": {"fp": "fp16", "format": "SafeTensor"},
                "hashes": {"SHA256": "AB" * 32},
            }
        ],
    }


async def version(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) >= LIMIT:
        return web.json_response({"error": "No model version with that id"}, status=404)
    return web.json_response(model_version(int(raw)))


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/api/v1/model-versions/{id}", version)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
