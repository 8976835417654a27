"""The layering of the C code, as a reviewer would draw it.

docs/design.md section 2.1 promises that the product's C has no cycles between
files, that every .c of libdatos has one header of its own, and that the three
folders of libdatos only reach downwards (serve and load use common, never each
other). These tests read the release build's object files with nm, so they see
the calls and data the compiler really emitted, not what the includes suggest.
"""
import collections
import os
import re
import subprocess

import pytest

from tools.httpd import REPO_ROOT

BUILD = os.path.join(REPO_ROOT, "build")
# httpd's own API needs every file of a module to name the module record
# (ap_get_module_config, APLOG_USE_MODULE): a reference to data that holds
# the hooks, not a call back into mod_datos.c, so it is not an edge.
MODULE_RECORD = "datos_module"


def object_files():
    """{unit name: path of its object} for the product's release objects."""
    dirs = [os.path.join(BUILD, "obj", d) for d in ("common", "serve", "load")]
    dirs += [os.path.join(BUILD, "mod_datos", ".libs"), os.path.join(BUILD, "loader-obj")]
    objs = {}
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for f in os.listdir(d):
            if f.endswith(".o"):
                objs[f[:-2]] = os.path.join(d, f)
    return objs


def symbols(path):
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBR":
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            used.add(parts[1])
    return defined, used


def file_graph(objs):
    """{unit: {units whose symbols it uses}}."""
    table = {u: symbols(p) for u, p in objs.items()}
    owner = {s: u for u, (defined, _) in table.items() for s in defined}
    graph = collections.defaultdict(set)
    for u, (_, used) in table.items():
        for s in used - {MODULE_RECORD}:
            if s in owner and owner[s] != u:
                graph[u].add(owner[s])
    return graph


def cycles(graph):
    state, found = {}, []

    def visit(u, stack):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u, [])
    return found


@pytest.fixture(scope="module")
def objs():
    found = object_files()
    if "datos_auth" not in found or "mod_datos" not in found:
        pytest.fail("the release build's objects are missing under build/: run `make all` first")
    return found


def test_no_file_calls_back_into_a_file_that_calls_it(objs):
    assert cycles(file_graph(objs)) == []


def test_the_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_libdatos_folders_only_reach_down(objs):
    folder = {}
    for d in ("common", "serve", "load"):
        for f in os.listdir(os.path.join(REPO_ROOT, "libdatos", d)):
            if f.endswith(".c"):
                folder[f[:-2]] = d
    graph = file_graph(objs)
    wrong = []
    for u, deps in graph.items():
        if u not in folder:
            continue
        for v in deps:
            if v in folder and folder[v] != "common" and folder[v] != folder[u]:
                wrong.append("%s (%s) -> %s (%s)" % (u, folder[u], v, folder[v]))
    assert wrong == []


def test_every_libdatos_source_has_its_own_header():
    missing = []
    for d in ("common", "serve", "load"):
        here = os.path.join(REPO_ROOT, "libdatos", d)
        for f in os.listdir(here):
            if f.endswith(".c") and not os.path.exists(os.path.join(here, f[:-2] + ".h")):
                missing.append(os.path.join(d, f))
    assert missing == []


def test_no_libdatos_file_includes_httpd():
    offenders = []
    for d in ("common", "serve", "load"):
        here = os.path.join(REPO_ROOT, "libdatos", d)
        for f in os.listdir(here):
            with open(os.path.join(here, f), encoding="utf-8") as src:
                if re.search(r'#include\s*[<"](httpd|http_[a-z_]+|ap_[a-z_]+)\.h[>"]', src.read()):
                    offenders.append(os.path.join(d, f))
    assert offenders == []
