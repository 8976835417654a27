#!/usr/bin/python3
"""make test-images: the three images of docker/ built and run as a user with a container
engine would, with the Dockerfiles and docker/compose.yaml as they are.

- Engine: podman and buildah from Debian, rootful, with their own storage (overlay;
  DATOS_PODMAN_STORAGE=vfs where the kernel has no overlayfs) under build/images-test/, runc as the runtime and the ulimits runc needs on these machines
  (nofile, nproc) in a containers.conf of its own, so the pod's infra container gets them too.
- Base: a debootstrap minbase of bookworm (debian_rootfs.py), imported and tagged
  debian:bookworm-slim and debian:bookworm, so the Dockerfiles' FROM lines resolve offline
  (--pull=never); apt inside the builds downloads from Debian.
- The compose services run together in one pod with a network namespace of its own (only
  loopback: no port of this machine is taken), in compose's order (emulator healthy, setup
  done, then httpd and loader), with compose's environment, volumes, entry points and stop
  grace periods. Service names resolve to the pod's loopback through a hosts file, as
  compose's network resolves them. Checks are made from inside the pod.

Prints one line per check and the figures (build times, image sizes, binary sizes); the first
failure stops the run with the containers' logs, exit code 1.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import debian_rootfs  # noqa: E402

REPO = debian_rootfs.REPO
DOCKER = os.path.join(REPO, "docker")
WORK = os.path.join(REPO, "build", "images-test")
# overlay: vfs (which needs no kernel support) copies every layer whole, about 8 GB here.
STORAGE = ["--root", os.path.join(WORK, "storage"), "--runroot", os.path.join(WORK, "run"),
           "--storage-driver", os.environ.get("DATOS_PODMAN_STORAGE", "overlay")]
CONTAINERS_CONF = """[containers]
# runc here cannot raise these limits to podman's defaults
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
IMAGES = ("emulator", "httpd", "loader")
POD = "datos-images-%d" % os.getpid()
STARTED = time.time()


class Failed(Exception):
    pass


def say(msg):
    print("[%6.1fs] %s" % (time.time() - STARTED, msg), flush=True)


def check(cond, what, detail=""):
    if not cond:
        raise Failed("%s%s" % (what, ("\n" + detail) if detail else ""))
    say("ok   " + what)


def env():
    return dict(os.environ, CONTAINERS_CONF=os.path.join(WORK, "containers.conf"),
                BUILDAH_ISOLATION="chroot", PATH="/usr/sbin:/usr/bin:/sbin:/bin")


def podman(*args, check=True, timeout=600, input=None):
    p = subprocess.run(["podman"] + STORAGE + list(args), capture_output=True, text=True,
                       timeout=timeout, env=env(), input=input)
    if check and p.returncode != 0:
        raise Failed("podman %s: exit %d\n%s%s" % (" ".join(args)[:300], p.returncode,
                                                   p.stdout[-3000:], p.stderr[-3000:]))
    return p


def image(name):
    return "localhost/datos-%s:test" % name


# ---------------------------------------------------------------- images

def base_image():
    rootfs = debian_rootfs.rootfs("bookworm-minbase", (), log=say)
    with open(rootfs + ".stamp") as f:
        tag = "localhost/datos-base:" + hashlib.sha256(f.read().encode()).hexdigest()[:12]
    if podman("image", "exists", tag, check=False).returncode != 0:
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        p = subprocess.run(["podman"] + STORAGE + ["import", "-", tag], stdin=tar.stdout,
                           capture_output=True, text=True, env=env(), timeout=600)
        tar.wait()
        if p.returncode != 0:
            raise Failed("podman import: " + p.stderr)
    podman("tag", tag, "docker.io/library/debian:bookworm-slim",
           "docker.io/library/debian:bookworm")
    return tag


def build(name):
    t0 = time.time()
    log = os.path.join(WORK, "build-%s.log" % name)
    with open(log, "w") as out:
        rc = subprocess.call(["podman"] + STORAGE + [
            "build", "--isolation", "chroot", "--pull=never", "--network", "host",
            "--format", "docker", "-f", os.path.join(DOCKER, name + ".Dockerfile"),
            "-t", image(name), REPO], stdout=out, stderr=subprocess.STDOUT, env=env(),
            timeout=1800)
    if rc != 0:
        with open(log) as f:
            raise Failed("podman build %s: exit %d\n%s" % (name, rc, f.read()[-4000:]))
    return time.time() - t0


def inspect(ref, fmt):
    return podman("image", "inspect", "--format", fmt, ref).stdout.strip()


def check_image(name, seconds):
    size = int(inspect(image(name), "{{.Size}}"))
    user = inspect(image(name), "{{.Config.User}}")
    mnt = podman("image", "mount", image(name)).stdout.strip()
    try:
        debs = [f for f in os.listdir(os.path.join(mnt, "var/cache/apt/archives"))
                if f.endswith(".deb")]
        lists = [f for f in os.listdir(os.path.join(mnt, "var/lib/apt/lists"))
                 if f not in ("partial", "lock", "auxfiles")]
        tools = [t for t in ("usr/bin/gcc", "usr/bin/cc", "usr/bin/make", "usr/bin/apxs")
                 if os.path.lexists(os.path.join(mnt, t))]
        binaries = {"httpd": "usr/lib/apache2/modules/mod_datos.so",
                    "loader": "usr/local/bin/datos-loader"}
        stripped = None
        if name in binaries:
            path = os.path.join(mnt, binaries[name])
            sections = subprocess.run(["readelf", "-SW", path], capture_output=True,
                                      text=True).stdout
            stripped = (".symtab" not in sections and ".debug_info" not in sections,
                        os.path.getsize(path))
    finally:
        podman("image", "unmount", image(name), check=False)
    say("%-8s built in %4.0f s, %5.1f MB, USER %s" % (name, seconds, size / 1e6, user))
    check(not debs and not lists, "%s: no apt cache left in the image (%d .deb, %d lists)"
          % (name, len(debs), len(lists)))
    check(not tools, "%s: no build tools %s" % (name, tools))
    check(user and user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0,
          "%s: runs as a numeric user that is not root (%s)" % (name, user))
    if stripped is not None:
        check(stripped[0], "%s: /%s is stripped (%d KB)" % (name, binaries[name],
                                                             stripped[1] // 1024))
    return size


# ---------------------------------------------------------------- the compose stack

def compose():
    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        return yaml.safe_load(f)


def service_image(svc):
    dockerfile = os.path.basename(svc["build"]["dockerfile"])
    return image(dockerfile[:-len(".Dockerfile")])


def duration(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(text))
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, None: n, "m": n * 60, "h": n * 3600}[m.group(2)]


def run_args(doc, name):
    """podman run arguments for a compose service, in the pod."""
    svc = doc["services"][name]
    args = ["--pod", POD, "--name", "%s-%s" % (POD, name),
            "-v", "%s:/etc/hosts:ro" % os.path.join(WORK, "hosts")]
    environment = svc.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(e.split("=", 1) for e in environment)
    for k, v in environment.items():
        args += ["-e", "%s=%s" % (k, v)]
    for vol in svc.get("volumes", []):
        parts = vol.split(":")
        src = parts[0]
        if src.startswith((".", "/")):
            parts[0] = os.path.normpath(os.path.join(DOCKER, src))
        else:
            parts[0] = "%s-%s" % (POD, src)
        args += ["-v", ":".join(parts)]
    if "stop_grace_period" in svc:
        args += ["--stop-timeout", str(int(duration(svc["stop_grace_period"])))]
    if svc.get("tty"):
        args.append("-t")
    entry = svc.get("entrypoint")
    if entry:
        entry = [e.replace("$$", "$") for e in entry] if isinstance(entry, list) else entry
        args += ["--entrypoint", json.dumps(entry) if isinstance(entry, list) else entry]
    args.append(service_image(svc))
    cmd = svc.get("command")
    if cmd:
        args += cmd if isinstance(cmd, list) else cmd.split()
    return args


def logs(name):
    p = podman("logs", "%s-%s" % (POD, name), check=False)
    return p.stdout + p.stderr


def state(name):
    return podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                  "%s-%s" % (POD, name), check=False).stdout.split()


def wait_healthy(name, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        st = state(name)
        if st and st[0] == "exited":
            raise Failed("%s exited with %s before it was healthy:\n%s"
                         % (name, st[1], logs(name)[-3000:]))
        # the image's own HEALTHCHECK command, run by podman
        if podman("healthcheck", "run", "%s-%s" % (POD, name), check=False).returncode == 0:
            return
        time.sleep(1)
    raise Failed("%s is not healthy after %d s:\n%s" % (name, seconds, logs(name)[-3000:]))


# A Python run in the emulator's container (it has python3 and the emulator's client), so
# every request is made inside the pod, as the other services make theirs.
PROBE = r"""
import base64, json, sys, urllib.request, urllib.error
sys.path.insert(0, "/opt/datos/emulator")
from gcpemu.client import Emulator
def http(method, path, auth=None, body=None):
    req = urllib.request.Request("http://127.0.0.1:%s" % PORT + path, method=method, data=body)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return [r.status, dict(r.headers), r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, dict(e.headers), e.read().decode()]
emu = Emulator.attach("http://127.0.0.1:%s" % EMU)
"""


def probe(code, port, emu_port):
    script = "PORT=%d\nEMU=%d\n%s\n%s" % (port, emu_port, PROBE, code)
    p = podman("exec", "-i", "%s-emulator" % POD, "python3", "-", input=script, check=False)
    if p.returncode != 0:
        raise Failed("probe failed:\n%s\n%s" % (code, p.stderr[-3000:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_stack():
    doc = compose()
    emu_port = int(re.search(r'"--port", "(\d+)"', open(
        os.path.join(DOCKER, "emulator.Dockerfile")).read()).group(1))
    port = int(doc["services"]["httpd"]["environment"]["PORT"])
    with open(os.path.join(WORK, "hosts"), "w") as f:
        f.write("127.0.0.1 localhost %s\n::1 localhost\n" % " ".join(doc["services"]))
    podman("pod", "create", "--name", POD, "--network", "none")
    for vol in doc.get("volumes") or {}:
        podman("volume", "create", "%s-%s" % (POD, vol))

    podman("run", "-d", *run_args(doc, "emulator"))
    wait_healthy("emulator")
    check(podman("exec", "%s-emulator" % POD, "id", "-u").stdout.strip() == "10002",
          "emulator: healthy (its HEALTHCHECK), runs as uid 10002")

    p = podman("run", *run_args(doc, "setup"), check=False, timeout=300)
    out = p.stdout + p.stderr
    m = re.search(r"published (\d+) valid and (\d+) invalid", out)
    check(p.returncode == 0 and "created latam_dataset.datos" in out and m,
          "setup: ran to completion (the table, the topics, the samples)", out)
    valid, invalid = int(m.group(1)), int(m.group(2))

    podman("run", "-d", *run_args(doc, "httpd"))
    wait_healthy("httpd")
    check(podman("exec", "%s-httpd" % POD, "id", "-u").stdout.strip() == "33",
          "httpd: healthy (HEALTHCHECK: curl /health), runs as www-data (uid 33)")

    podman("run", "-d", *run_args(doc, "loader"))
    deadline = time.time() + 180
    finished = []
    while time.time() < deadline and not finished:
        finished = [json.loads(ln) for ln in logs("loader").splitlines()
                    if ln.startswith("{") and '"run_finished"' in ln]
        if not finished:
            st = state("loader")
            if st and st[0] == "exited":
                raise Failed("the loader service exited:\n" + logs("loader")[-3000:])
            time.sleep(1)
    check(finished and finished[0]["exit_code"] == 0 and finished[0]["rows_loaded"] == valid
          and finished[0]["dead_lettered"] == invalid,
          "loader: one run, %d rows loaded, %d dead-lettered" % (valid, invalid),
          logs("loader")[-3000:])

    # The answer httpd fetched at start-up may still be fresh, and a stale one
    # is served while its refresh runs in the background: a person reloads
    # until the new rows show, within DATOS_FRESH_FOR and one refresh.
    want = {"pub-%d" % i for i in range(1, valid + 1)}
    deadline = time.time() + 60
    while True:
        seen = probe("""
status, _, body = http("GET", "/datos?limit=100")
print(json.dumps([d["id"] for d in json.loads(body)["datos"]] if status == 200 else []))
""", port, emu_port)
        if want <= set(seen) or time.time() > deadline:
            break
        time.sleep(1)

    got = probe("""
out = {}
out["health"] = http("GET", "/health")
out["datos"] = http("GET", "/datos?limit=100")
out["trace"] = http("TRACE", "/datos")
out["options"] = http("OPTIONS", "/datos")
out["post_anon"] = http("POST", "/datos", body=b'{"id":"img-1","timestamp":"2024-01-14T14:00:00Z"}')
out["post_demo"] = http("POST", "/datos", auth="demo:demo",
                        body=b'{"id":"img-1","timestamp":"2024-01-14T14:00:00Z"}')
out["dead"] = [m["message"].get("attributes", {}).get("datos_error")
               for m in emu.drain("datos-dlq-subscription")]
out["rows"] = sorted(r["id"] for r in emu.table_rows())
print(json.dumps(out))
""", port, emu_port)
    status, headers, body = got["health"]
    check(status == 200 and json.loads(body) == {"status": "ok"}
          and headers.get("Server") == "Apache", "GET /health: 200 {\"status\":\"ok\"}, "
          "Server: Apache (no version)")
    status, _, body = got["datos"]
    ids = {d["id"] for d in json.loads(body)["datos"]} if status == 200 else set()
    check({"pub-%d" % i for i in range(1, valid + 1)} <= ids,
          "GET /datos after one loader run: the published records are there (%d rows)"
          % len(ids), body[:500])
    check(got["trace"][0] == 405, "TRACE /datos: 405")
    check(got["options"][0] == 204 and got["options"][1].get("Allow") == "GET, HEAD, POST",
          "OPTIONS /datos: 204, Allow: GET, HEAD, POST", str(got["options"][:2]))
    check(got["post_anon"][0] == 401 and got["post_demo"][0] == 202,
          "POST /datos: 401 without the demo user, 202 with it",
          str([got["post_anon"][0], got["post_demo"]]))
    check(len(got["dead"]) == invalid and None not in got["dead"],
          "dead letters: %d, each with its reason %s" % (invalid, sorted(got["dead"])))

    # The journal volume: what the loader keeps between runs.
    vol = podman("volume", "inspect", "--format", "{{.Mountpoint}}",
                 "%s-loader-state" % POD).stdout.strip()
    kept = sorted(os.listdir(vol))
    check("journal" in kept and os.stat(vol).st_uid == 10001,
          "loader: its journal is on the volume, owned by uid 10001 %s" % kept)

    # Graceful stops: SIGWINCH for httpd (its STOPSIGNAL), SIGTERM for the loader loop.
    for name, limit in (("httpd", 10), ("loader", 10), ("emulator", 10)):
        t0 = time.time()
        podman("stop", "%s-%s" % (POD, name), timeout=180)
        took = time.time() - t0
        st = state(name)
        check(st[0] == "exited" and st[1] == "0" and took < limit,
              "%s: podman stop, exit 0 in %.1f s" % (name, took), logs(name)[-2000:])
    check("caught SIGWINCH, shutting down gracefully" in logs("httpd"),
          "httpd: the stop was graceful (caught SIGWINCH)")
    return doc


def check_key_owner(doc):
    """A key file must belong to the user httpd runs as (www-data): one owned by root is
    refused at start, naming the owner; the same key owned by uid 33 starts."""
    key = os.path.join(WORK, "datos-key.json")
    # any well-formed service-account key: the check is made before it is used
    sa = subprocess.run(["/usr/bin/python3", "-c", (
        "import sys,json; sys.path.insert(0,%r); from gcpemu.keys import make_service_account;"
        "print(json.dumps(make_service_account('datos-local','http://127.0.0.1:1/token')))")
        % os.path.join(REPO, "emulator")], capture_output=True, text=True, check=True).stdout
    with open(key, "w") as f:
        f.write(sa)
    os.chmod(key, 0o600)
    common = ["--network", "none", "-e", "PORT=8080", "-e", "DATOS_PROJECT=datos-local",
              "-e", "DATOS_CREDENTIALS=/run/secrets/datos-key.json",
              "-v", "%s:/run/secrets/datos-key.json:ro" % key, image("httpd"), "-t"]
    os.chown(key, 0, 0)
    os.chmod(key, 0o644)  # readable, so the owner is what is judged
    p = podman("run", "--rm", *common, check=False, timeout=120)
    out = p.stdout + p.stderr
    check(p.returncode != 0 and "is owned by root (uid 0)" in out
          and "must be owned by www-data (uid 33)" in out and "run chown www-data" in out,
          "httpd: a key file owned by root is refused, naming the owner and the chown",
          out[-2000:])
    os.chown(key, 33, 33)
    os.chmod(key, 0o600)
    p = podman("run", "--rm", *common, check=False, timeout=120)
    check(p.returncode == 0 and "Syntax OK" in p.stdout + p.stderr,
          "httpd: the same key owned by www-data passes", (p.stdout + p.stderr)[-2000:])


def cleanup():
    podman("pod", "rm", "-f", "-t", "5", POD, check=False, timeout=300)
    for vol in (compose().get("volumes") or {}):
        podman("volume", "rm", "-f", "%s-%s" % (POD, vol), check=False)


def main():
    if os.geteuid() != 0:
        sys.exit("make test-images needs root (rootful podman, debootstrap)")
    os.makedirs(WORK, exist_ok=True)
    with open(os.path.join(WORK, "containers.conf"), "w") as f:
        f.write(CONTAINERS_CONF)
    ok = False
    figures = {}
    try:
        say("base image %s" % base_image())
        for name in ("httpd", "loader", "emulator"):  # loader reuses httpd's build stage
            figures[name] = (build(name),)
            figures[name] += (check_image(name, figures[name][0]),)
        run_stack()
        check_key_owner(compose())
        ok = True
    except Failed as e:
        print("FAIL %s" % e, flush=True)
        for name in compose()["services"]:
            if state(name):
                print("---- %s (%s)\n%s" % (name, " ".join(state(name)), logs(name)[-2500:]))
    finally:
        cleanup()
    du = subprocess.run(["du", "-sh", os.path.join(WORK, "storage")], capture_output=True,
                        text=True).stdout.split()
    say("images: %s; storage %s" % (", ".join(
        "%s %.0f MB (built in %.0f s)" % (n, f[1] / 1e6, f[0]) for n, f in figures.items()
        if len(f) == 2), du[0] if du else "?"))
    say("make test-images: %s" % ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
