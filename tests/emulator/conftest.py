"""Fixtures for the emulator's own tests: one emulator per session, reset per test."""
import os
import shutil

import pytest

from emu_support import TEST_TMP, Api
from gcpemu.client import Emulator


@pytest.fixture(scope="session")
def emulator():
    os.makedirs(TEST_TMP, exist_ok=True)
    emu = Emulator(os.path.join(TEST_TMP, "session"))
    emu.start()
    yield emu
    emu.stop()
    shutil.rmtree(TEST_TMP, ignore_errors=True)


@pytest.fixture
def emu(emulator):
    """The emulator, reset, its clock frozen: it moves only when a test advances or
    sets it, so both sides of a deadline are checked whatever the requests take."""
    emulator.reset()
    emulator.freeze_clock()
    return emulator


@pytest.fixture
def api(emu):
    a = Api(emu)
    yield a
    a.s.close()


@pytest.fixture
def datos(emu):
    """The product's dataset and table, empty."""
    emu.create_dataset("latam_dataset", location="southamerica-east1")
    emu.create_datos_table()
    return emu
