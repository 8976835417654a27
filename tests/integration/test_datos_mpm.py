"""mod_datos under the event, worker and prefork MPMs: concurrent requests,
a graceful restart, and a clean shutdown."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from tools.httpd import MPMS
from datos_env import contract_rows, datos_conf, expected_answer, get, ready, seed


@pytest.fixture(scope="module")
def rows(emulator):
    rows = contract_rows(emulator.now())
    seed(emulator, rows)
    return rows


@pytest.mark.parametrize("mpm", MPMS)
def test_concurrent_requests_and_graceful_restart(rows, httpd_factory, emulator, mpm):
    h = httpd_factory("datos-mpm-" + mpm, mpm=mpm)
    h.write_config(datos_conf(emulator))
    h.start()
    ready(h)
    expected = {"datos": expected_answer(rows, 7)}

    def fetch(i):
        r = get(h, "/datos?limit=7" if i % 4 else "/health")
        return r.status_code, r.json()

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(fetch, range(48)))
    for i, (status, body) in enumerate(results):
        assert status == 200, body
        assert body == (expected if i % 4 else {"status": "ok"})

    h.graceful()
    assert get(h, "/health").json() == {"status": "ok"}
    with ThreadPoolExecutor(8) as pool:
        after = list(pool.map(lambda _: get(h, "/datos?limit=7").json(), range(16)))
    assert after == [expected] * 16
