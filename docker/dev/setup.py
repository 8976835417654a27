#!/usr/bin/python3
"""docker/compose.yaml's one-shot `setup` service: what `make run` does to its emulator before
starting httpd, through the emulator's REST API. Creates latam_dataset.datos with sample rows
and the Pub/Sub topic, subscription and dead-letter topic the first time (the emulator keeps
them in its volume), and publishes valid and invalid sample messages for the loader on every
start. Same functions as `make run` (emulator/gcpemu/demo.py), so both stacks start alike.

    EMULATOR_URL=http://emulator:9050 python3 docker/dev/setup.py
"""
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "emulator"))

from gcpemu.client import Emulator, EmulatorError  # noqa: E402
from gcpemu.demo import (DATASET, TABLE, LOCATION, TOPIC, create_pubsub,  # noqa: E402
                               create_resources, publish_samples, seed)


def wait_healthy(emu, seconds=60):
    """compose's depends_on already waits for the healthcheck; this covers runners that
    ignore the condition. Real time: the emulator process is still starting."""
    deadline = time.time() + seconds
    while True:
        try:
            if emu._call("GET", "/_emulator/health", timeout=2) == {"status": "ok"}:
                return
        except (OSError, EmulatorError):
            pass
        if time.time() > deadline:
            sys.exit("setup: no emulator at %s after %ds" % (emu.base_url, seconds))
        time.sleep(0.5)


def main():
    emu = Emulator.attach(os.environ.get("EMULATOR_URL", "http://emulator:9050"),
                          project=os.environ.get("GOOGLE_CLOUD_PROJECT", "datos-local"))
    wait_healthy(emu)
    if create_resources(emu):
        print("created %s.%s in %s with %d sample rows" % (DATASET, TABLE, LOCATION, seed(emu)))
    else:
        print("using %s.%s kept in the emulator's volume" % (DATASET, TABLE))
    create_pubsub(emu)
    valid, invalid = publish_samples(emu)
    print("published %d valid and %d invalid sample messages to %s" % (valid, invalid, TOPIC))
    return 0


if __name__ == "__main__":
    sys.exit(main())
