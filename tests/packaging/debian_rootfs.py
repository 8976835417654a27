"""Debian bookworm root filesystems made with debootstrap, from the Debian mirror this
machine's apt uses, cached under build/ (make test-install, make test-images).

A cached tree is reused while its stamp (suite, variant, packages, mirrors) is unchanged;
`rm -rf build/rootfs` makes them again. The tree's sources.list names the same suites as
the host's (bookworm, bookworm-updates, bookworm-security), so apt inside it installs the
versions the host has.
"""
import glob
import os
import shutil
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(REPO, "build", "rootfs")
SUITE = "bookworm"


def _sources_entries():
    """(uri, suite) pairs of the host's enabled deb sources, both file formats."""
    entries = []
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb":
                    if words[1].startswith("["):  # [options]
                        while words and not words[1].endswith("]"):
                            words.pop(1)
                        words.pop(1)
                    entries.append((words[1].rstrip("/"), words[2]))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path, encoding="utf-8", errors="replace") as f:
            stanzas = f.read().split("\n\n")
        for stanza in stanzas:
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.split()
            if "deb" not in fields.get("types", []) or fields.get("enabled") == ["no"]:
                continue
            for uri in fields.get("uris", []):
                for suite in fields.get("suites", []):
                    entries.append((uri.rstrip("/"), suite))
    return entries


def mirrors():
    """The Debian mirror and the security mirror apt uses here."""
    entries = _sources_entries()
    main = [u for u, s in entries if s == SUITE]
    security = [u for u, s in entries if s == SUITE + "-security"]
    if not main:
        raise RuntimeError("no '%s' source in /etc/apt/sources.list(.d): %s" % (SUITE, entries))
    return main[0], (security[0] if security else None)


def sources_list():
    main, security = mirrors()
    lines = ["deb %s %s main" % (main, SUITE), "deb %s %s-updates main" % (main, SUITE)]
    if security:
        lines.append("deb %s %s-security main" % (security, SUITE))
    return "\n".join(lines) + "\n"


def rootfs(name, include=(), log=print):
    """The path of a cached minbase tree with `include` added; made when missing."""
    main, _ = mirrors()
    path = os.path.join(CACHE, name)
    stamp = "%s minbase include=%s mirror=%s sources=%r\n" % (
        SUITE, ",".join(include), main, sources_list())
    stamp_file = path + ".stamp"
    if os.path.isdir(path) and os.path.isfile(stamp_file):
        with open(stamp_file) as f:
            if f.read() == stamp:
                return path
    tmp = path + ".new"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(CACHE, exist_ok=True)
    cmd = ["debootstrap", "--variant=minbase"]
    if include:
        cmd.append("--include=" + ",".join(include))
    cmd += [SUITE, tmp, main]
    log("debootstrap: %s (about a minute; cached in %s)" % (" ".join(cmd),
                                                           os.path.relpath(path, REPO)))
    t0 = time.time()
    with open(path + ".log", "w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        with open(path + ".log") as f:
            raise RuntimeError("debootstrap failed (%d):\n%s" % (rc, f.read()[-4000:]))
    with open(os.path.join(tmp, "etc/apt/sources.list"), "w") as f:
        f.write(sources_list())
    # What debootstrap downloaded is in the tree; nothing needs it again.
    for deb in glob.glob(os.path.join(tmp, "var/cache/apt/archives/*.deb")):
        os.unlink(deb)
    os.rename(tmp, path)
    with open(stamp_file, "w") as f:
        f.write(stamp)
    log("debootstrap: done in %.0f s" % (time.time() - t0))
    return path
