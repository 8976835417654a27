"""docker/: the images and the compose stack, checked without building an image (no Docker
engine is needed, nothing is pulled).

- Each Dockerfile passes dockerfile-utils' linter (node_modules, installed by `make deps`).
- What a user of the images would notice: files COPY'd from the context exist and are not
  dropped by .dockerignore; runtime stages carry no compilers or -dev packages but every
  shared library the built binaries need; `make install DESTDIR=/out` puts the files where
  the runtime stages copy them from, and datos.load names the path the module lands on; the
  images run as a numeric non-root user; the loader's journal is a VOLUME at its state_dir.
- The httpd image's Apache configuration, replayed from Debian's /etc/apache2 with the
  image's own files and configure script, run by the image's entry point with
  docker/compose.yaml's environment (its emulator URL pointed at this suite's emulator):
  TRACE is refused, /health and /datos answer, POST /datos takes the compose stack's demo
  user, SIGWINCH (the STOPSIGNAL) stops it gracefully. docker/dev/setup.py prepares the
  emulator as the compose stack does, and the compose loader loop loads what was published.
"""
import base64
import functools
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest
import requests

from tools.httpd import REPO_ROOT, TEST_TMP, free_port

DOCKER = os.path.join(REPO_ROOT, "docker")
DOCKERFILES = {name: os.path.join(DOCKER, name + ".Dockerfile")
               for name in ("httpd", "loader", "emulator")}
COMPOSE = os.path.join(DOCKER, "compose.yaml")
NODE_MODULES = os.path.join(REPO_ROOT, "node_modules")
BUILD = os.path.join(REPO_ROOT, "build")
PYTHON = "/usr/bin/python3"
WWW_DATA = 33  # Debian's fixed uid/gid of www-data (base-passwd)

# Anything that compiles or links, and the packages that only exist to do so.
BUILD_TOOLS = {"build-essential", "gcc", "g++", "cpp", "make", "clang", "pkg-config", "pkgconf",
               "libtool", "autoconf", "automake", "binutils", "apache2-dev", "libc6-dev"}
# Libraries every Debian base image has (Essential packages depend on them).
BASE_LIBRARIES = {"libc6", "libuuid1", "libcrypt1", "libgcc-s1"}


# ---------------------------------------------------------------- Dockerfile parsing

class Stage:
    def __init__(self, base, name):
        self.base = base
        self.name = name
        self.instructions = []  # (KEYWORD, text, line)

    def all(self, keyword):
        return [(text, line) for kw, text, line in self.instructions if kw == keyword]

    def last(self, keyword):
        found = self.all(keyword)
        return found[-1][0] if found else None


def parse_dockerfile(path):
    """Stages of a Dockerfile: its instructions with continuations joined and comments
    dropped (including comment lines inside a continuation, as Docker does)."""
    stages = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        line, start = lines[i], i + 1
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text = line
        while text.endswith("\\"):
            text = text[:-1]
            while i < len(lines) and lines[i].lstrip().startswith("#"):
                i += 1
            if i >= len(lines):
                break
            text += " " + lines[i].strip()
            i += 1
        keyword, _, rest = text.strip().partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
            continue
        stages[-1].instructions.append((keyword, rest, start))
    return stages


def exec_form(text):
    """The argv of an exec-form (JSON) instruction, else the shell words."""
    if text.startswith("["):
        return json.loads(text)
    return shlex.split(text)


def parse_copy(text):
    """COPY/ADD -> (flags, sources, destination)."""
    words = shlex.split(text)
    flags = {}
    while words and words[0].startswith("--"):
        k, _, v = words.pop(0)[2:].partition("=")
        flags[k] = v
    if words and words[0].startswith("["):
        words = json.loads(" ".join(words))
    return flags, words[:-1], words[-1]


def copy_target(sources, dest, src):
    """Where `src` lands for COPY sources... dest."""
    if dest.endswith("/") or len(sources) > 1:
        return os.path.join(dest, os.path.basename(src.rstrip("/")))
    return dest


def apt_packages(stage):
    """Packages named by `apt-get install` in the stage's RUN instructions."""
    pkgs = []
    for text, _ in stage.all("RUN"):
        words = shlex.split(text)
        for j, w in enumerate(words):
            if w == "install" and j > 0 and words[j - 1] in ("apt-get", "apt"):
                for x in words[j + 1:]:
                    if x in ("&&", ";", "||", "|"):
                        break
                    if not x.startswith("-"):
                        pkgs.append(x)
    return pkgs


def dockerignore_patterns():
    path = os.path.join(REPO_ROOT, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [ln.strip().strip("/") for ln in f if ln.strip() and not ln.startswith("#")]


def ignored(relpath, patterns):
    """True when .dockerignore drops relpath (or a folder above it) from the context.
    Enough of Docker's rules for the patterns used here: exact paths, globs, **/."""
    import fnmatch
    parts = relpath.strip("/").split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    for pat in patterns:
        if pat.startswith("!"):
            raise AssertionError(".dockerignore exceptions (!) need a fuller matcher here")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pat):
                return True
            if pat.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], pat[3:]):
                return True
    return False


def final_stage(name):
    return parse_dockerfile(DOCKERFILES[name])[-1]


def loader_config_path(stage):
    argv = exec_form(stage.last("ENTRYPOINT"))
    assert "--config" in argv, "the loader image names no --config: %s" % argv
    return argv[argv.index("--config") + 1]


def context_source(stage, image_path):
    """The build-context file a stage COPYs to image_path (None if none does)."""
    for text, _ in stage.all("COPY"):
        flags, sources, dest = parse_copy(text)
        if "from" in flags:
            continue
        for src in sources:
            if copy_target(sources, dest, src) == image_path:
                return os.path.join(REPO_ROOT, src)
    return None


def conf_value(path, key):
    """A `key = value` of a datos-loader config file (None when not set)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*%s\s*=\s*(.*?)\s*$" % re.escape(key), line)
            if m and not line.lstrip().startswith("#"):
                return m.group(1).strip('"')
    return None


# ---------------------------------------------------------------- (a) lint

LINT_JS = r"""
const fs = require('fs');
const utils = require(process.argv[1] + '/dockerfile-utils');
const out = {};
for (const f of process.argv.slice(2)) {
  out[f] = utils.validate(fs.readFileSync(f, 'utf8')).map(d => ({
    severity: d.severity, line: d.range.start.line + 1, message: d.message}));
}
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make deps)")
@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_lint(name):
    if not os.path.isdir(os.path.join(NODE_MODULES, "dockerfile-utils")):
        pytest.fail("node_modules/dockerfile-utils is missing: run `make deps` (npm ci)")
    path = DOCKERFILES[name]
    p = subprocess.run(["node", "-e", LINT_JS, NODE_MODULES, path], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    problems = json.loads(p.stdout)[path]
    # severity 1 is an error, 2 a warning (an instruction that is ignored or means nothing);
    # both are mistakes in a file this short.
    bad = ["line %d: %s" % (d["line"], d["message"]) for d in problems if d["severity"] <= 2]
    assert not bad, "%s:\n  %s" % (os.path.relpath(path, REPO_ROOT), "\n  ".join(bad))


# ---------------------------------------------------------------- (b) structure

@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_copied_files_are_in_the_build_context(name):
    patterns = dockerignore_patterns()
    problems = []
    for stage in parse_dockerfile(DOCKERFILES[name]):
        for kw in ("COPY", "ADD"):
            for text, line in stage.all(kw):
                flags, sources, _ = parse_copy(text)
                if "from" in flags:
                    continue
                for src in sources:
                    path = os.path.join(REPO_ROOT, src)
                    if not os.path.exists(path):
                        problems.append("line %d: %s does not exist" % (line, src))
                    elif os.path.isdir(path) and not os.listdir(path):
                        problems.append("line %d: %s is empty" % (line, src))
                    elif ignored(src, patterns):
                        problems.append("line %d: %s is excluded by .dockerignore"
                                        % (line, src))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_runtime_stage_has_no_build_tools(name):
    stage = final_stage(name)
    pkgs = apt_packages(stage)
    assert pkgs, "the runtime stage installs nothing?"
    bad = [p for p in pkgs if p.endswith("-dev") or p in BUILD_TOOLS]
    assert not bad, "build tools in the runtime image: %s" % bad
    for text, line in stage.all("COPY"):
        flags, sources, _ = parse_copy(text)
        if "from" in flags:
            outside = [s for s in sources if not s.startswith("/out/")]
            assert not outside, ("line %d copies from the build tree, not from what "
                                 "`make install DESTDIR=/out` installed: %s" % (line, outside))


def needed_packages(binary):
    """Debian packages of the shared libraries `binary` links directly (DT_NEEDED)."""
    out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                         check=True).stdout
    libs = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    cache = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True,
                           check=True).stdout
    pkgs = {}
    for lib in libs:
        m = re.search(r"^\s+%s \(libc6,x86-64[^)]*\) => (\S+)$" % re.escape(lib), cache, re.M)
        assert m, "%s needs %s, which this machine does not have" % (binary, lib)
        # merged /usr: dpkg may know the file under /usr/lib or /lib
        found = m.group(1)
        candidates = [found, "/usr" + found, found[len("/usr"):], os.path.realpath(found)]
        for c in candidates:
            owner = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
            if owner.returncode == 0:
                break
        assert owner.returncode == 0, "no package owns %s" % candidates
        pkgs[lib] = owner.stdout.split(":")[0]
    return pkgs


@pytest.mark.skipif(shutil.which("readelf") is None or shutil.which("dpkg") is None,
                    reason="readelf or dpkg missing (make deps installs build-essential)")
@pytest.mark.parametrize("name,binary", [("httpd", "mod_datos.so"), ("loader", "datos-loader")])
def test_runtime_stage_installs_every_library_the_binary_needs(name, binary):
    path = os.path.join(BUILD, binary)
    if not os.path.exists(path):
        pytest.skip("build/%s is not built (make all)" % binary)
    installed = set(apt_packages(final_stage(name))) | BASE_LIBRARIES
    missing = {lib: pkg for lib, pkg in needed_packages(path).items() if pkg not in installed}
    assert not missing, "%s image lacks the packages of %s" % (name, missing)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_runs_as_numeric_non_root_user(name):
    user = final_stage(name).last("USER")
    assert user, "no USER: the image runs as root"
    uid = user.split(":")[0]
    # numeric, so Kubernetes' runAsNonRoot can verify it without the image's passwd
    assert uid.isdigit() and int(uid) != 0, "USER %s" % user


@pytest.fixture(scope="module")
def installed_tree():
    """`make install DESTDIR=...`, as the build stages run it (into /out)."""
    for b in ("mod_datos.so", "datos-loader"):
        if not os.path.exists(os.path.join(BUILD, b)):
            pytest.skip("build/%s is not built (make all)" % b)
    out = os.path.join(TEST_TMP, "docker-out")
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.run(["make", "-s", "install", "DESTDIR=" + out, "PREFIX=/usr/local"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def build_copies(stage):
    """[(source under /out, destination in the image)] of the stage's COPY --from=build."""
    copies = []
    for text, _ in stage.all("COPY"):
        flags, sources, dest = parse_copy(text)
        if flags.get("from") == "build":
            copies += [(s, copy_target(sources, dest, s)) for s in sources]
    return copies


@pytest.mark.parametrize("name", ["httpd", "loader"])
def test_runtime_copies_what_make_install_installs(name, installed_tree):
    stage = final_stage(name)
    copies = build_copies(stage)
    assert copies
    for src, _ in copies:
        assert os.path.isfile(installed_tree + src[len("/out"):]), (
            "COPY --from=build %s: `make install DESTDIR=/out` puts no file there" % src)
    # the entry point is a file the stage put in the image
    entry = exec_form(stage.last("ENTRYPOINT"))[0]
    placed = [d for _, d in copies] + [
        copy_target(s, d, x) for t, _ in stage.all("COPY")
        for f, s, d in [parse_copy(t)] if "from" not in f for x in s]
    assert entry in placed, "ENTRYPOINT %s is not a file the image's COPYs put there" % entry


@pytest.mark.parametrize("name", ["httpd", "loader"])
def test_build_stage_copies_what_make_install_reads(name):
    """Every file of the tree `make install` reads is in the build stage (a new one, say
    the man pages, must get its COPY or the image build fails)."""
    p = subprocess.run(["make", "-n", "install", "DESTDIR=/out", "PREFIX=/usr/local"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    tops = set()
    commands = "\n".join(ln for ln in p.stdout.splitlines()
                         if not ln.lstrip().startswith("echo "))  # messages name docs
    for word in re.findall(r"[\w./-]+", commands):
        top = word.split("/")[0]
        if "/" in word and top and top not in ("build", "") and \
                os.path.exists(os.path.join(REPO_ROOT, word)):
            tops.add(top)
    assert {"conf", "man"} <= tops, tops
    build = parse_dockerfile(DOCKERFILES[name])[0]
    copied = {src.strip("/").split("/")[0] for text, _ in build.all("COPY")
              for src in parse_copy(text)[1]}
    assert tops <= copied, "the build stage lacks %s" % sorted(tops - copied)


def test_datos_load_names_the_path_the_module_is_copied_to(installed_tree):
    copies = dict((os.path.basename(s), (s, d)) for s, d in build_copies(final_stage("httpd")))
    assert "mod_datos.so" in copies and "datos.load" in copies
    with open(installed_tree + copies["datos.load"][0][len("/out"):]) as f:
        m = re.search(r"^\s*LoadModule\s+datos_module\s+(\S+)", f.read(), re.M)
    assert m, "datos.load has no LoadModule datos_module line"
    assert m.group(1) == copies["mod_datos.so"][1], (
        "datos.load loads %s, the image has the module at %s"
        % (m.group(1), copies["mod_datos.so"][1]))
    # and the build stage's apxs agrees with the path make install used
    libexec = subprocess.run(["apxs", "-q", "LIBEXECDIR"], capture_output=True,
                             text=True).stdout.strip()
    if libexec:
        assert copies["mod_datos.so"][0] == "/out%s/mod_datos.so" % libexec


def test_loader_journal_is_a_volume_at_state_dir():
    stage = final_stage("loader")
    conf_in_image = loader_config_path(stage)
    src = context_source(stage, conf_in_image)
    assert src, "nothing is copied to %s, the --config of the ENTRYPOINT" % conf_in_image
    state_dir = conf_value(src, "state_dir")
    assert state_dir, "%s sets no state_dir" % os.path.relpath(src, REPO_ROOT)
    volumes = [v for text, _ in stage.all("VOLUME") for v in exec_form(text)]
    assert state_dir in volumes, ("state_dir %s (the journal) is not a VOLUME (%s): it would "
                                  "not outlive the container" % (state_dir, volumes))
    # the user it runs as owns it, or the first run fails on its lock
    user = stage.last("USER").split(":")[0]
    runs = " ".join(t for t, _ in stage.all("RUN"))
    m = re.search(r"install -d -o (\S+) -g \S+ -m \S+ %s\b" % re.escape(state_dir), runs)
    assert m, "the image does not create %s for its user" % state_dir
    uids = {}  # user name -> uid, from the stage's useradd commands
    for cmd in re.findall(r"useradd ([^&;]*)", runs):
        words = shlex.split(cmd)
        if "--uid" in words:
            uids[words[-1]] = words[words.index("--uid") + 1]
    owner = uids.get(m.group(1), m.group(1))
    assert owner == user, "%s belongs to %s, the loader runs as uid %s" % (
        state_dir, m.group(1), user)


# ---------------------------------------------------------------- (b2) programs

# Words that start a shell command but name no program of the image.
SHELL_WORDS = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done",
               "case", "esac", "in", "!", "{", "}", "(", ")", "set", "export", "unset", ".",
               "trap", "wait", "kill", "echo", "printf", "cd", "exit", "return", "shift",
               "read", "local", "test", "[", "[[", ":", "true", "false", "command", "eval",
               "break", "continue", "umask", "exec"}
PYTHON_RUNNERS = re.compile(
    r'(?:subprocess\.(?:run|Popen|call|check_call|check_output)\(\s*|\b\w*(?:cmd|argv)\w*\s*=\s*)'
    r'\[\s*"([^"$]+)"')
RUNTIME_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]


def shell_programs(script):
    """The programs a shell script runs: the first word of each simple command, for
    commands written literally (an expansion names nothing to check)."""
    progs = []
    text = re.sub(r"(^|\s)#.*", "", script)  # comments
    for cmd in re.split(r"\n|;|&&|\|\||\||(?<!>)&(?!>)|\$\(|`|\bthen\b|\bdo\b|\belse\b",
                        text):
        words = cmd.split()
        while words and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])
                         or words[0] in ("exec", "!", "{", "(")):
            words.pop(0)
        if not words:
            continue
        w = words[0].strip("\"'")
        if w in SHELL_WORDS or "$" in w or w.endswith(")") or not re.match(r"^[\w./-]+$", w):
            continue
        progs.append(w)
    return progs


def image_programs(name):
    """(program, where) for everything the image's own code runs: its RUN, ENTRYPOINT, CMD
    and HEALTHCHECK instructions, the shell scripts and Python files it copies in, and the
    commands docker/compose.yaml gives the services built from it."""
    stage = final_stage(name)
    found = []
    for kw in ("ENTRYPOINT", "CMD", "HEALTHCHECK"):
        for text, line in stage.all(kw):
            if kw == "HEALTHCHECK":
                text = re.sub(r"^(--\S+\s+)*CMD\s+", "", text)
            if text.startswith("["):
                argv = json.loads(text)
                if argv:
                    found.append((argv[0], "%s line %d" % (kw, line)))
                    if argv[0] in ("/bin/sh", "sh") and argv[1:2] == ["-c"]:
                        found += [(p, "%s line %d" % (kw, line))
                                  for p in shell_programs(argv[2])]
            else:
                found += [(p, "%s line %d" % (kw, line)) for p in shell_programs(text)]
    for text, line in stage.all("RUN"):
        found += [(p, "RUN line %d" % line) for p in shell_programs(text)]
    for text, _ in stage.all("COPY"):
        flags, sources, _ = parse_copy(text)
        if "from" in flags:
            continue
        for src in sources:
            root = os.path.join(REPO_ROOT, src)
            files = [root] if os.path.isfile(root) else [
                os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
            for path in files:
                rel = os.path.relpath(path, REPO_ROOT)
                if ignored(rel, dockerignore_patterns()):
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                if path.endswith(".py"):
                    found += [(p, rel) for p in PYTHON_RUNNERS.findall(text)]
                elif path.endswith(".sh") or text.startswith("#!/bin/sh"):
                    found += [(p, rel) for p in shell_programs(text)]
    doc = compose()
    for svc_name, svc in doc["services"].items():
        if "build" not in svc or os.path.realpath(service_dockerfile(svc)[1]) != \
                os.path.realpath(DOCKERFILES[name]):
            continue
        for key in ("entrypoint", "command"):
            argv = svc.get(key)
            if isinstance(argv, str):
                argv = shlex.split(argv)
            if not argv:
                continue
            where = "compose %s %s" % (svc_name, key)
            found.append((argv[0], where))
            if argv[0] in ("/bin/sh", "sh") and argv[1:2] == ["-c"]:
                found += [(p, where) for p in shell_programs(argv[2].replace("$$", "$"))]
    return found


@functools.lru_cache(maxsize=None)
def installed_packages():
    """This machine's dpkg database: {package: (essential_or_required, [[alternatives]])},
    and {virtual name: [providers]}."""
    out = subprocess.run(["dpkg-query", "-W", "-f",
                          "${Package}\t${Status}\t${Essential}\t${Priority}\t${Provides}\t"
                          "${Pre-Depends}, ${Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    db, provides = {}, {}
    for line in out.splitlines():
        pkg, status, essential, priority, prov, deps = (line.split("\t") + [""] * 6)[:6]
        if not status.endswith(" installed"):
            continue
        groups = [[re.sub(r"[\s(:].*", "", a.strip()) for a in g.split("|")]
                  for g in deps.split(",") if g.strip()]
        db[pkg] = (essential == "yes" or priority == "required", groups)
        for p in prov.split(","):
            if p.strip():
                provides.setdefault(re.sub(r"[\s(].*", "", p.strip()), []).append(pkg)
    return db, provides


def package_closure(pkgs, db, provides):
    """The packages apt installs for `pkgs`, as far as this machine's dpkg knows them."""
    seen, todo = set(), list(pkgs)
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        for group in db.get(pkg, (False, []))[1]:
            choice = next((a for a in group if a in db), None) or next(
                (p for a in group for p in provides.get(a, [])), None)
            if choice:
                todo.append(choice)
    return seen


def candidate_paths(program):
    """Where `program` may be on this machine, as dpkg may know it (merged /usr)."""
    paths = [program] if program.startswith("/") else [
        os.path.join(d, program) for d in RUNTIME_PATH]
    out = []
    for path in paths:
        if os.path.exists(path):
            out += [path, os.path.realpath(path),
                    path[len("/usr"):] if path.startswith("/usr/") else "/usr" + path]
    return out


@functools.lru_cache(maxsize=None)
def dpkg_owners(paths):
    """{path: package} for the paths dpkg knows, in one dpkg -S (it reads its whole file
    database each time it runs)."""
    if not paths:
        return {}
    p = subprocess.run(["dpkg", "-S"] + list(paths), capture_output=True, text=True)
    owners = {}
    for line in p.stdout.splitlines():
        if line.startswith("diversion by ") or ": " not in line:
            continue
        pkgs, _, path = line.partition(": ")
        owners.setdefault(path.strip(), pkgs.split(",")[0].strip())
    return owners


def owner_package(program, owners):
    """The Debian package that ships `program` on this machine."""
    for c in candidate_paths(program):
        if c in owners:
            return owners[c]
    return None


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian machine")
@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_program_the_image_runs_is_installed_in_it(name):
    """A program the image's code runs but its packages do not bring fails only when that
    code runs (the emulator image once exited 1 at start: keys.py runs openssl, the image
    had only python3)."""
    stage = final_stage(name)
    db, provides = installed_packages()
    base = {p for p, (required, _) in db.items() if required}  # what minbase/-slim holds
    have = package_closure(set(apt_packages(stage)) | base, db, provides)
    copied = set()
    for text, _ in stage.all("COPY"):
        flags, sources, dest = parse_copy(text)
        copied |= {copy_target(sources, dest, src) for src in sources}
    programs = image_programs(name)
    owners = dpkg_owners(tuple(sorted({c for p, _ in programs for c in candidate_paths(p)})))
    missing = []
    for program, where in programs:
        if program in copied or (not program.startswith("/") and any(
                os.path.join(d, program) in copied for d in RUNTIME_PATH)):
            continue
        pkg = owner_package(program, owners)
        if pkg is None:
            missing.append("%s (%s): no Debian package ships it" % (program, where))
        elif pkg not in have:
            missing.append("%s (%s): in %s, which the image does not install"
                           % (program, where, pkg))
    assert not missing, "%s image:\n  %s" % (name, "\n  ".join(missing))


def test_program_scan_finds_what_the_images_run():
    """The scan itself: it must see the programs the images are known to run."""
    progs = {n: {p for p, _ in image_programs(n)} for n in DOCKERFILES}
    assert {"openssl", "python3"} <= progs["emulator"], progs["emulator"]
    assert {"curl", "a2enmod", "/usr/sbin/apache2", "/usr/local/bin/datos-httpd"} \
        <= progs["httpd"], progs["httpd"]
    assert {"/usr/local/bin/datos-loader", "sleep", "/bin/sh"} <= progs["loader"], \
        progs["loader"]


# ---------------------------------------------------------------- (c) compose

def compose():
    yaml = pytest.importorskip("yaml", reason="python3-yaml is missing (make deps)")
    with open(COMPOSE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def env_of(service):
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def service_dockerfile(service):
    b = service["build"]
    context = os.path.normpath(os.path.join(DOCKER, b.get("context", ".")))
    return context, os.path.join(context, b.get("dockerfile", "Dockerfile"))


def emulator_port(doc):
    """The port the emulator service listens on inside its container."""
    _, dockerfile = service_dockerfile(doc["services"]["emulator"])
    argv = doc["services"]["emulator"].get("command") or exec_form(
        parse_dockerfile(dockerfile)[-1].last("CMD"))
    assert "--host" in argv and argv[argv.index("--host") + 1] == "0.0.0.0", (
        "the emulator must listen on all interfaces of its container: %s" % argv)
    return int(argv[argv.index("--port") + 1])


def test_compose_builds_from_files_that_exist():
    doc = compose()
    assert doc["services"], "no services"
    for name, svc in doc["services"].items():
        assert "build" in svc or "image" in svc, name
        if "build" in svc:
            context, dockerfile = service_dockerfile(svc)
            assert os.path.isdir(context), "%s: no build context %s" % (name, context)
            assert os.path.isfile(dockerfile), "%s: no Dockerfile %s" % (name, dockerfile)
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                assert os.path.exists(os.path.join(DOCKER, src)), "%s mounts %s" % (name, src)
            else:
                assert src in (doc.get("volumes") or {}), "%s: undeclared volume %s" % (
                    name, src)
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in doc["services"], "%s depends on unknown %s" % (name, dep)
            if cond.get("condition") == "service_healthy":
                dsvc = doc["services"][dep]
                has = "healthcheck" in dsvc or parse_dockerfile(
                    service_dockerfile(dsvc)[1])[-1].last("HEALTHCHECK")
                assert has, "%s waits for %s to be healthy; it has no healthcheck" % (name, dep)


def test_compose_wires_httpd_and_loader_to_the_emulator():
    doc = compose()
    svcs = doc["services"]
    port = emulator_port(doc)
    emu = "emulator:%d" % port
    assert "127.0.0.1:%d:%d" % (port, port) in svcs["emulator"].get("ports", [])

    env = env_of(svcs["httpd"])
    assert env["DATOS_BIGQUERY_URL"] == "http://%s/bigquery/v2" % emu
    assert env["DATOS_PUBSUB_URL"] == "http://%s" % emu
    # plain http to a host that is not loopback needs this, or httpd refuses to start
    assert env["DATOS_ALLOW_INSECURE_HTTP"].lower() == "on"
    assert env["DATOS_CREDENTIALS"] == "none"
    assert env["DATOS_PROJECT"]
    # the published port is the one httpd listens on (PORT), which the image EXPOSEs
    _, dockerfile = service_dockerfile(svcs["httpd"])
    exposed = parse_dockerfile(dockerfile)[-1].last("EXPOSE")
    published = [p.rsplit(":", 1)[1] for p in svcs["httpd"]["ports"]]
    assert env.get("PORT", "8080") in published and exposed in published
    for p in svcs["httpd"]["ports"] + svcs["emulator"]["ports"]:
        assert p.startswith("127.0.0.1:"), "%s is published beyond this machine" % p

    lenv = env_of(svcs["loader"])
    assert lenv["PUBSUB_EMULATOR_HOST"] == emu
    assert lenv["BIGQUERY_EMULATOR_HOST"] in (emu, "http://" + emu)
    assert lenv["GOOGLE_CLOUD_PROJECT"] == env["DATOS_PROJECT"]
    assert env_of(svcs["setup"])["EMULATOR_URL"] == "http://" + emu

    # the loader's journal is a named volume (kept across `compose down`) at its state_dir
    stage = parse_dockerfile(service_dockerfile(svcs["loader"])[1])[-1]
    state_dir = conf_value(context_source(stage, loader_config_path(stage)), "state_dir")
    mounts = dict(reversed(v.split(":")[:2]) for v in svcs["loader"]["volumes"])
    assert state_dir in mounts and mounts[state_dir] in (doc.get("volumes") or {}), mounts


# ---------------------------------------------------------------- the httpd image's configuration, run

def compose_command(svc_name):
    """A compose service's entrypoint as its shell would run it ($$ is compose's $)."""
    argv = compose()["services"][svc_name]["entrypoint"]
    return [a.replace("$$", "$") for a in argv]


def chown_tree(path, uid):
    for dirpath, dirs, files in os.walk(path):
        os.chown(dirpath, uid, uid)
        for f in files:
            os.chown(os.path.join(dirpath, f), uid, uid)


@pytest.fixture
def image_root(installed_tree):
    """The httpd image's filesystem, as far as Apache sees it: Debian's stock /etc/apache2
    (the apache2 package this machine has, as the image does), then the runtime stage's COPY
    instructions in order (context files and the /out tree) and its configure script, run
    with APACHE_CONFDIR pointing here. Only the paths are moved under this folder."""
    if not os.path.isfile("/etc/apache2/apache2.conf") or shutil.which("a2enmod") is None:
        pytest.skip("Debian's apache2 is not installed (make deps)")
    root = os.path.join(TEST_TMP, "docker-httpd")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    os.chmod(root, 0o755)
    conf = root + "/etc/apache2"
    shutil.copytree("/etc/apache2", conf, symlinks=True)
    stage = final_stage("httpd")
    for text, _ in stage.all("COPY"):
        flags, sources, dest = parse_copy(text)
        for src in sources:
            from_ = installed_tree + src[len("/out"):] if "from" in flags else \
                os.path.join(REPO_ROOT, src)
            target = root + copy_target(sources, dest, src)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(from_, target)
    scripts = [w for t, _ in stage.all("RUN") for w in shlex.split(t) if w.endswith(".sh")]
    assert scripts, "the runtime stage runs no configure script"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "APACHE_CONFDIR": conf,
           "APACHE_STATE_DIRECTORY": root + "/var/lib/apache2"}
    for s in scripts:
        p = subprocess.run([root + s], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
    return root


def relocate(root):
    """Points the image's absolute paths under root: Debian's envvars directories, files
    under /etc/apache2 named by the configuration, and the module."""
    conf = root + "/etc/apache2"
    with open(conf + "/envvars") as f:
        text = f.read()
    text = re.sub(r"=(/var/(?:run|lock|log)/apache2)", "=" + root + r"\1", text)
    with open(conf + "/envvars", "w") as f:
        f.write(text)
    for d in ("/var/run/apache2", "/var/lock/apache2", "/var/log/apache2",
              "/var/cache/apache2/mod_datos"):
        os.makedirs(root + d, exist_ok=True)
        chown_tree(root + d, WWW_DATA)
    for path in glob.glob(conf + "/**/*", recursive=True):
        if os.path.isfile(path) and not os.path.islink(path) and path.endswith((".conf",
                                                                               ".load")):
            with open(path) as f:
                text = f.read()
            new = text.replace("/etc/apache2/", conf + "/").replace(
                "/usr/lib/apache2/modules/mod_datos.so",
                root + "/usr/lib/apache2/modules/mod_datos.so")
            if new != text:
                with open(path, "w") as f:
                    f.write(new)


def effective(conf_dir, directive):
    """The value the last occurrence of a server-wide directive has in the enabled tree,
    in apache2.conf's include order."""
    order = [conf_dir + "/apache2.conf"]
    for pat in ("mods-enabled/*.load", "mods-enabled/*.conf", "ports.conf",
                "conf-enabled/*.conf", "sites-enabled/*.conf"):
        order += sorted(glob.glob(os.path.join(conf_dir, pat)))
    value = None
    for path in order:
        with open(path) as f:
            for line in f:
                m = re.match(r"\s*%s\s+(\S+)" % directive, line, re.I)
                if m:
                    value = (m.group(1), os.path.relpath(path, conf_dir))
    return value


def test_httpd_image_enables_trace_enable_off(image_root):
    conf = image_root + "/etc/apache2"
    assert os.path.exists(conf + "/mods-enabled/datos.load"), "a2enmod datos did not run"
    assert os.path.exists(conf + "/mods-enabled/socache_shmcb.load"), "datos.load's Depends"
    value = effective(conf, "TraceEnable")
    assert value and value[0].lower() == "off", "TraceEnable is %s in the image" % (value,)
    # security.conf (enabled by Debian, sorted after ours) would say OS / On
    assert effective(conf, "ServerTokens")[0] == "Prod"
    assert effective(conf, "ServerSignature")[0] == "Off"
    listen = effective(conf, "Listen")
    assert listen == ("${PORT}", "ports.conf"), listen
    assert not glob.glob(conf + "/sites-enabled/*"), "a site with its own logs is enabled"


def start_image_httpd(root, env):
    """The image's ENTRYPOINT, as www-data (the image's USER), with its stdout/stderr
    owned by that user as the container runtime arranges."""
    stage = final_stage("httpd")
    entry = exec_form(stage.last("ENTRYPOINT"))
    log = open(os.path.join(root, "stdio.log"), "w")
    os.chown(log.name, WWW_DATA, WWW_DATA)
    cmd = [root + entry[0]] + entry[1:]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=%d" % WWW_DATA, "--regid=%d" % WWW_DATA,
               "--clear-groups"] + cmd
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    return proc


def read_log(root):
    with open(os.path.join(root, "stdio.log"), encoding="utf-8", errors="replace") as f:
        return f.read()


def wait_http(url, proc, root, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("httpd exited with %s:\n%s" % (proc.returncode, read_log(root)))
        try:
            return requests.get(url, timeout=30)
        except requests.ConnectionError:
            time.sleep(0.05)
    pytest.fail("httpd did not answer in %ss:\n%s" % (timeout, read_log(root)))


def stop(proc):
    """Ends a process started in its own session and whatever it left in that session
    (httpd's children, a loader run, a sleep), even when the test failed half-way."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            proc.poll()
            time.sleep(0.05)
    proc.poll()


def test_the_image_keeps_the_fleet_secret_of_its_variable_in_a_file_of_its_own(
        image_root, emulator, redis):
    """Cloud Run passes the fleet tier's key as DATOS_CACHE_SECRET (its secret files
    belong to root, which the image's user could not read under mod_datos's rule for a
    key file): the entry point writes it to a file of the image's user with no group or
    other bits, which DatosCacheSecretFile names, and apache2 runs without the variable.
    The tier's entries are sealed with it."""
    doc = compose()
    emulator.reset()
    setup_env = {k: v.replace("emulator:%d" % emulator_port(doc),
                              emulator.base_url.split("://")[1])
                 for k, v in env_of(doc["services"]["setup"]).items()}
    p = subprocess.run([PYTHON, os.path.join(REPO_ROOT, "docker", "dev", "setup.py")],
                       env=dict(setup_env, PATH="/usr/bin:/bin"), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    relocate(image_root)
    secret = "a fleet secret of more than thirty-two bytes, from the platform"
    port = free_port()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PORT": "127.0.0.1:%d" % port,
           "APACHE_CONFDIR": image_root + "/etc/apache2",
           "DATOS_STATE_DIR": image_root + "/var/cache/apache2/mod_datos",
           "DATOS_PROJECT": emulator.project, "DATOS_CREDENTIALS": "none",
           "DATOS_BIGQUERY_URL": emulator.base_url + "/bigquery/v2",
           "DATOS_CACHE": "redis:" + redis.address, "DATOS_CACHE_SECRET": secret}
    # both ways at once is a mistake the entry point names
    proc = start_image_httpd(image_root, dict(env, DATOS_CACHE_SECRET_FILE="/nonexistent"))
    assert proc.wait(60) == 2
    assert "give DATOS_CACHE_SECRET or DATOS_CACHE_SECRET_FILE, not both" in read_log(image_root)
    proc = start_image_httpd(image_root, env)
    base = "http://127.0.0.1:%d" % port
    try:
        assert wait_http(base + "/health", proc, image_root).status_code == 200
        path = image_root + "/var/run/apache2/datos-cache.secret"
        st = os.stat(path)
        assert st.st_mode & 0o777 == 0o600
        assert st.st_uid == (WWW_DATA if os.geteuid() == 0 else os.geteuid())
        with open(path) as f:
            assert f.read() == secret
        with open("/proc/%d/environ" % proc.pid, "rb") as f:
            environ = f.read().split(b"\0")
        assert b"DATOS_CACHE_SECRET_FILE=" + path.encode() in environ
        assert not [e for e in environ if e.startswith(b"DATOS_CACHE_SECRET=")]
        deadline = time.time() + 120
        r = requests.get(base + "/health?ready", timeout=120)
        while r.status_code != 200 and time.time() < deadline:
            time.sleep(0.1)
            r = requests.get(base + "/health?ready", timeout=120)
        assert r.status_code == 200, r.text
        assert requests.get(base + "/datos", timeout=120).status_code == 200
        assert redis.keys(), "nothing in the fleet tier"
    finally:
        stop(proc)
    log = read_log(image_root)
    assert secret not in log
    problems = [ln for ln in log.splitlines()
                if re.search(r":(warn|error|crit|alert|emerg)\] ", ln)]
    assert not problems, log


def test_compose_stack_on_the_image_configuration(image_root, emulator):
    """docker/compose.yaml's setup, httpd and loader services with the images' files,
    against this suite's emulator in place of the emulator service."""
    doc = compose()
    emu_host = "emulator:%d" % emulator_port(doc)
    here = emulator.base_url.split("://")[1]

    def localize(env):
        return {k: v.replace(emu_host, here) for k, v in env.items()}

    # setup: what the compose stack (and make run) does to a fresh emulator
    emulator.reset()
    setup_env = localize(env_of(doc["services"]["setup"]))
    p = subprocess.run([PYTHON, os.path.join(REPO_ROOT, "docker", "dev", "setup.py")],
                       env=dict(setup_env, PATH="/usr/bin:/bin"), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "created latam_dataset.datos" in p.stdout
    seeded = {r["id"] for r in emulator.table_rows()}
    assert {"789", "795"} <= seeded

    # httpd: the image's entry point and configuration, the compose service's environment
    relocate(image_root)
    for vol in doc["services"]["httpd"].get("volumes", []):
        src, target = vol.split(":")[:2]
        shutil.copy2(os.path.join(DOCKER, src), image_root + target)
    port = free_port()
    env = localize(env_of(doc["services"]["httpd"]))
    env.update(PORT="127.0.0.1:%d" % port, PATH="/usr/sbin:/usr/bin:/sbin:/bin",
               APACHE_CONFDIR=image_root + "/etc/apache2",
               DATOS_STATE_DIR=image_root + "/var/cache/apache2/mod_datos")
    proc = start_image_httpd(image_root, env)
    base = "http://127.0.0.1:%d" % port
    try:
        r = wait_http(base + "/health", proc, image_root)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert r.headers["Server"] == "Apache"  # ServerTokens Prod: no version, no OS
        # apache2 itself is the process the runtime signals (exec, no shell in front)
        assert os.readlink("/proc/%d/exe" % proc.pid) == "/usr/sbin/apache2"
        with open("/proc/%d/status" % proc.pid) as f:
            uids = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
        assert int(uids) == (WWW_DATA if os.geteuid() == 0 else os.geteuid())

        r = requests.get(base + "/datos?limit=100", timeout=120)
        assert r.status_code == 200, r.text
        assert {d["id"] for d in r.json()["datos"]} == seeded
        # the last good answer went to the state directory, writable by the image's user
        deadline = time.time() + 60
        while not os.listdir(env["DATOS_STATE_DIR"]) and time.time() < deadline:
            time.sleep(0.05)
        assert os.listdir(env["DATOS_STATE_DIR"]), "nothing in DatosStateDir"

        r = requests.request("TRACE", base + "/datos", timeout=120)
        assert r.status_code == 405
        r = requests.request("TRACE", base + "/", timeout=120)
        assert r.status_code == 405

        record = {"id": "docker-post", "contenido": "desde compose",
                  "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        r = requests.post(base + "/datos", json=record, timeout=120)
        assert r.status_code == 401
        r = requests.post(base + "/datos", json=record, auth=("demo", "demo"), timeout=120)
        assert r.status_code == 202, r.text

        # the image's STOPSIGNAL: a graceful stop, which ends with status 0 (the log
        # says so, below; children still running past GracefulShutdownTimeout would be
        # killed with a [warn] line, which the log check below fails on)
        stopsig = getattr(signal, final_stage("httpd").last("STOPSIGNAL"))
        os.kill(proc.pid, stopsig)
        assert proc.wait(60) == 0
    finally:
        stop(proc)
    log = read_log(image_root)
    problems = [ln for ln in log.splitlines()
                if re.search(r":(warn|error|crit|alert|emerg)\] ", ln)
                and "AH00492" not in ln]  # "caught SIGWINCH, shutting down gracefully"
    assert not problems, log
    assert '"GET /health HTTP/1.1" 200' in log, "no access log on stdout:\n" + log
    assert "caught SIGWINCH" in log

    # loader: the compose service's scheduler loop, running the loader image's command
    # with its config (state_dir moved here), until the published records are loaded
    if not os.path.exists(os.path.join(BUILD, "datos-loader")):
        pytest.skip("build/datos-loader is not built")
    lstage = final_stage("loader")
    conf_in_image = loader_config_path(lstage)
    state = os.path.join(image_root, "loader-state")
    os.makedirs(state)
    conf = os.path.join(image_root, "loader.conf")
    with open(context_source(lstage, conf_in_image)) as f:
        text = f.read()
    state_dir = conf_value(context_source(lstage, conf_in_image), "state_dir")
    with open(conf, "w") as f:
        f.write(text.replace(state_dir, state))
    script = compose_command("loader")
    binary = exec_form(lstage.last("ENTRYPOINT"))[0]
    script[-1] = script[-1].replace(binary, os.path.join(BUILD, "datos-loader")).replace(
        conf_in_image, conf)
    lenv = localize(env_of(doc["services"]["loader"]))
    assert int(lenv.get("LOADER_EVERY", "60")) >= 60
    # The loop's pause made far longer than any wait below, so that an end
    # after SIGTERM can only be the trap's, however slow the machine.
    lenv.update(PATH="/usr/bin:/bin", LOADER_EVERY="3600")
    with open(os.path.join(image_root, "loader.log"), "w") as log:
        loop = subprocess.Popen(script, env=lenv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        want = {"pub-1", "pub-2", "pub-3", "docker-post"}
        deadline = time.time() + 60
        while time.time() < deadline and loop.poll() is None:
            if want <= {r["id"] for r in emulator.table_rows()}:
                break
            time.sleep(0.2)
        with open(os.path.join(image_root, "loader.log")) as f:
            out = f.read()
        assert want <= {r["id"] for r in emulator.table_rows()}, out
        assert os.listdir(state), "the loader wrote nothing in its state_dir"
        # docker compose stop: SIGTERM to the loop, which ends with code 0 without
        # sleeping out its LOADER_EVERY (an hour here); a run in progress first ends
        # as SIGTERM makes it (its acknowledgements get up to 40 s)
        loop.send_signal(signal.SIGTERM)
        try:
            rc = loop.wait(300)
        except subprocess.TimeoutExpired:
            with open(os.path.join(image_root, "loader.log")) as f:
                raise AssertionError("the loop did not end on SIGTERM:\n" + f.read()[-3000:])
        assert rc == 0
    finally:
        stop(loop)
        emulator.reset()  # the suites after this one start from an empty emulator
