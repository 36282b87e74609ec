"""Start the real app as another user and print what it logged as JSON lines, then stop it.

    python -m tests.downloads.start_as_another_user CATALOG_DIR MODELS_DIR UID [on|off]

Everything is imported while still the starting user (the interpreter may live where another
user cannot read); then the process becomes UID (when started as root) and runs the app's start
and stop, as `python -m service` would."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from service.http.app import create_app
from service.settings import Settings

KEY = "a-test-key-0123456789abcdef"


class Lines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(json.dumps({"logger": record.name, "level": record.levelname, "message": record.getMessage()}), flush=True)


async def start_and_stop(settings: Settings) -> None:
    runner = web.AppRunner(create_app(settings, KEY))
    await runner.setup()  # every start-up step runs here
    await runner.cleanup()


def main() -> None:
    catalogs, models, uid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    downloads = sys.argv[4] != "off" if len(sys.argv) > 4 else True
    logging.getLogger().addHandler(Lines())
    logging.getLogger().setLevel(logging.INFO)
    if os.getuid() == 0 and uid != 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    settings = Settings(catalog_dir=Path(catalogs), models_dir=Path(models), hashing=False, update_check_interval_h=0, downloads=downloads)
    asyncio.run(start_and_stop(settings))


if __name__ == "__main__":
    main()
