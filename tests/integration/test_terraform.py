"""terraform/modules/datos: the data plane of one datos system, checked
offline (the rest of terraform/ is checked by test_terraform_cloud.py).

terraform cannot download its providers here, so `terraform validate` and
`plan` are out of reach. Instead: `terraform fmt -check` where a terraform
binary exists (it is also a syntax check), a parse of every file with
@cdktf/hcl2json, and an "apply" of the resources' settings to the emulator,
which refuses what Google refuses. The loader and mod_datos then run with the
settings terraform prints (its `loader_conf` and `httpd_directives` outputs)
against those resources, and the `datos_latest` view's SQL runs on the
loaded rows."""
import glob
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from datos_env import get
from gcpemu.client import DATOS_SCHEMA
from tools.httpd import REPO_ROOT
from harness.loader import Loader

TF_ROOT = os.path.join(REPO_ROOT, "terraform")
TF_DIR = os.path.join(TF_ROOT, "modules", "datos")
HCL2JSON = os.path.join(REPO_ROOT, "tests", "integration", "hcl2json.js")
NODE_MODULE = os.path.join(REPO_ROOT, "node_modules", "@cdktf", "hcl2json")
REF = re.compile(r"\$\{([^}]*)\}")


def test_terraform_fmt_accepts_every_file():
    tf = shutil.which("terraform")
    if not tf:
        pytest.skip("no terraform binary on this machine (Debian has none); the parse below "
                    "still checks the syntax")
    p = subprocess.run([tf, "fmt", "-check", "-diff", "-recursive", TF_ROOT],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, TF_CLI_CONFIG_FILE="/dev/null"))
    assert p.returncode == 0, p.stdout + p.stderr


_PARSED = {}


def parse_dir(directory):
    """Every block of directory/*.tf, merged: {"resource": {(type, name): body},
    "variable": {name: body}, "output": {...}, "locals": {...}, "module": {...},
    "ephemeral": {(type, name): body}, ...}, bodies as hcl2json gives them
    (expressions stay strings such as "${var.topic}")."""
    if directory in _PARSED:
        return _PARSED[directory]
    if shutil.which("node") is None or not os.path.isdir(NODE_MODULE):
        pytest.skip("node or @cdktf/hcl2json is not installed (make deps)")
    files = sorted(glob.glob(os.path.join(directory, "*.tf")))
    assert files
    p = subprocess.run(["node", HCL2JSON] + files, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    merged = {}
    for doc in json.loads(p.stdout).values():
        for kind, blocks in doc.items():
            if kind in ("resource", "data", "ephemeral"):
                for rtype, named in blocks.items():
                    for name, body in named.items():
                        key = (rtype, name)
                        assert key not in merged.setdefault(kind, {}), key
                        merged[kind][key] = body[0]
            elif kind in ("variable", "output", "locals", "module"):
                for name, body in (blocks.items() if kind != "locals"
                                   else ((k, v) for b in blocks for k, v in b.items())):
                    assert name not in merged.setdefault(kind, {}), (kind, name)
                    # a block is a one-element list; a local's value is as written
                    merged[kind][name] = body[0] if kind != "locals" else body
            else:
                merged.setdefault(kind, []).append(blocks)
    _PARSED[directory] = merged
    return merged


@pytest.fixture(scope="module")
def tf():
    """The module terraform/modules/datos: one system."""
    return parse_dir(TF_DIR)


@pytest.fixture(scope="module")
def root():
    """The root configuration terraform/: the map of systems, CI/CD."""
    return parse_dir(TF_ROOT)


def resources(tf, rtype):
    return {name: body for (t, name), body in tf["resource"].items() if t == rtype}


def resolve(tf, value, project):
    """An expression with the variables' defaults (project_id = the emulator's
    project) and the resource names they make; anything else is a failure."""
    if not isinstance(value, str):
        return value
    names = {
        "google_pubsub_topic.datos.name": "${var.topic}",
        "google_pubsub_topic.datos.id": "projects/${var.project_id}/topics/${var.topic}",
        "google_pubsub_topic.dead_letter.name": "${var.dead_letter_topic}",
        "google_pubsub_topic.dead_letter.id":
            "projects/${var.project_id}/topics/${var.dead_letter_topic}",
        "google_pubsub_subscription.loader.name": "${var.subscription}",
        "google_pubsub_subscription.dead_letter.name": "${var.dead_letter_subscription}",
        "google_bigquery_table.datos.table_id": "${var.table_id}",
        "google_bigquery_dataset.datos.dataset_id": "${var.dataset_id}",
    }

    def one(m):
        ref = m.group(1).strip()
        if ref in names:
            return resolve(tf, names[ref], project)
        assert ref.startswith("var."), "cannot resolve ${%s}" % ref
        name = ref[4:]
        if name == "project_id":
            return project
        return str(tf["variable"][name]["default"])

    whole = REF.fullmatch(value)
    if whole and whole.group(1).startswith("var.") and whole.group(1)[4:] != "project_id":
        return tf["variable"][whole.group(1)[4:]]["default"]
    return REF.sub(one, value)


def seconds(duration):
    m = re.fullmatch(r"(\d+)s", duration)
    assert m, duration
    return int(m.group(1))


# ------------------------------------------------------------------ structure

def test_the_table_is_the_one_the_programs_are_tested_against(tf):
    table = resources(tf, "google_bigquery_table")["datos"]
    assert table["schema"] == '${file("${path.module}/datos-schema.json")}'
    with open(os.path.join(TF_DIR, "datos-schema.json")) as f:
        schema = json.load(f)
    assert [{k: c[k] for k in ("name", "type", "mode")} for c in schema] == DATOS_SCHEMA
    assert table["time_partitioning"] == [{"type": "DAY", "field": "timestamp"}]
    assert table["clustering"] == ["id"]
    assert table["deletion_protection"] == "${var.deletion_protection}"
    assert tf["variable"]["deletion_protection"]["default"] is True
    dataset = resources(tf, "google_bigquery_dataset")["datos"]
    assert dataset["location"] == "${var.location}"


def test_the_dead_letter_policy_can_forward(tf):
    sub = resources(tf, "google_pubsub_subscription")["loader"]
    assert sub["dead_letter_policy"][0]["dead_letter_topic"] == \
        "${google_pubsub_topic.dead_letter.id}"
    # docs/design.md: maxDeliveryAttempts 100, a last resort behind the loader's own dead-lettering
    assert tf["variable"]["max_delivery_attempts"]["default"] == 100
    # a cron-drained subscription must never expire for want of pulls
    assert sub["expiration_policy"] == [{"ttl": ""}]
    # Pub/Sub's service agent needs both grants, or messages are redelivered forever
    agent = "${local.pubsub_service_agent}"
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in tf["locals"]["pubsub_service_agent"]
    topic_grants = {(b["topic"], b["role"]) for b in
                    resources(tf, "google_pubsub_topic_iam_member").values()
                    if b["member"] == agent}
    sub_grants = {(b["subscription"], b["role"]) for b in
                  resources(tf, "google_pubsub_subscription_iam_member").values()
                  if b["member"] == agent}
    assert topic_grants == {("${google_pubsub_topic.dead_letter.id}", "roles/pubsub.publisher")}
    assert sub_grants == {("${google_pubsub_subscription.loader.id}", "roles/pubsub.subscriber")}


def members(body):
    """The principals an _iam_member resource grants to (its for_each values
    when member is ${each.value})."""
    if body.get("member") == "${each.value}" and isinstance(body.get("for_each"), dict):
        return list(body["for_each"].values())
    return [body["member"]] if "member" in body else []


def target(body):
    for key in ("topic", "subscription", "secret_id", "bucket", "repository",
                "service_account_id"):
        if key in body:
            return body[key]
    if "table_id" in body:
        return "table"
    if "name" in body:
        return body["name"]
    return body.get("project")


def grants(tf, account):
    """{(resource type, target, role)} granted to a service account."""
    member = "serviceAccount:${google_service_account.%s.email}" % account
    out = set()
    for (rtype, _name), b in tf["resource"].items():
        if rtype.endswith("_iam_member") and member in members(b):
            out.add((rtype, target(b), b["role"]))
    return out


def test_each_program_gets_only_the_roles_it_needs(tf):
    reader = grants(tf, "reader")
    loader = grants(tf, "loader")
    assert reader == {
        ("google_project_iam_member", "${var.project_id}", "roles/bigquery.jobUser"),
        ("google_bigquery_table_iam_member", "table", "roles/bigquery.dataViewer"),
        ("google_pubsub_topic_iam_member", "${google_pubsub_topic.datos.id}",
         "roles/pubsub.publisher"),
        # the fleet tier's signing key, and the ingestion users, each its own secret
        ("google_secret_manager_secret_iam_member",
         "${google_secret_manager_secret.cache_key[0].id}", "roles/secretmanager.secretAccessor"),
        ("google_secret_manager_secret_iam_member",
         "projects/${var.project_id}/secrets/${var.ingest_htpasswd_secret}",
         "roles/secretmanager.secretAccessor"),
    }
    # POST /datos only: the reader publishes, and reads the users, only when ingestion is on
    res = tf["resource"]
    for name in ("reader_publishes_ingested",):
        assert res[("google_pubsub_topic_iam_member", name)]["count"] == \
            "${var.ingest_enabled ? 1 : 0}"
    assert res[("google_secret_manager_secret_iam_member", "reader_reads_ingest_users")][
        "count"] == "${var.ingest_enabled ? 1 : 0}"
    assert res[("google_secret_manager_secret_iam_member", "reader_reads_cache_key")][
        "count"] == "${var.fleet_cache ? 1 : 0}"
    assert tf["variable"]["ingest_enabled"]["default"] is False
    assert loader == {
        ("google_project_iam_member", "${var.project_id}", "roles/bigquery.jobUser"),
        ("google_bigquery_table_iam_member", "table", "roles/bigquery.dataEditor"),
        ("google_pubsub_subscription_iam_member", "${google_pubsub_subscription.loader.id}",
         "roles/pubsub.subscriber"),
        ("google_pubsub_topic_iam_member", "${google_pubsub_topic.dead_letter.id}",
         "roles/pubsub.publisher"),
        ("google_pubsub_subscription_iam_member",
         "${google_pubsub_subscription.dead_letter.id}", "roles/pubsub.subscriber"),
        ("google_pubsub_topic_iam_member", "${google_pubsub_topic.datos.id}",
         "roles/pubsub.publisher"),
        # its journal's bucket and its settings file, nothing else of either service
        ("google_storage_bucket_iam_member", "${google_storage_bucket.loader_state.name}",
         "roles/storage.objectUser"),
        ("google_secret_manager_secret_iam_member",
         "${google_secret_manager_secret.loader_conf.id}", "roles/secretmanager.secretAccessor"),
    }
    # the scheduler may start the loader's job and do nothing else
    assert grants(tf, "scheduler") == {
        ("google_cloud_run_v2_job_iam_member", "${google_cloud_run_v2_job.loader.name}",
         "roles/run.invoker")}
    # no key in terraform's state, no broad role anywhere
    assert not resources(tf, "google_service_account_key")
    roles = {b.get("role") for (t, _), b in tf["resource"].items() if t.endswith("_iam_member")}
    assert not roles & {"roles/owner", "roles/editor", "roles/bigquery.admin",
                        "roles/pubsub.admin", "roles/storage.admin",
                        "roles/secretmanager.admin", "roles/run.admin"}
    # grants are on resources: the only project-level one is jobUser (jobs run in a project)
    project_roles = {b["role"] for (t, _), b in tf["resource"].items()
                     if t == "google_project_iam_member"}
    assert project_roles == {"roles/bigquery.jobUser"}


def test_defaults_are_the_programs_defaults(tf):
    with open(os.path.join(REPO_ROOT, "conf", "loader.conf.example")) as f:
        example = dict(re.findall(r"^#(\w+) = (\S+)$", f.read(), re.M))
    v = {k: b.get("default") for k, b in tf["variable"].items()}
    assert example["subscription"] == v["subscription"]
    assert example["dead_letter_topic"] == v["dead_letter_topic"]
    assert example["topic"] == v["topic"]
    assert example["dead_letter_subscription"] == v["dead_letter_subscription"]
    assert example["table"] == "%s.%s" % (v["dataset_id"], v["table_id"])
    view = resources(tf, "google_bigquery_table")["datos_latest"]
    assert view["table_id"] == "${var.table_id}_latest"


# ------------------------------------------------------------ the resources at work

def apply_to_emulator(tf, emulator):
    """What `terraform apply` would create, made through the emulator's REST API
    from the values in the .tf files; the emulator answers 400 where Google would."""
    p = emulator.project
    emulator.reset()
    ds = resources(tf, "google_bigquery_dataset")["datos"]
    dataset = resolve(tf, ds["dataset_id"], p)
    emulator.create_dataset(dataset, location=resolve(tf, ds["location"], p))
    table = resources(tf, "google_bigquery_table")["datos"]
    with open(os.path.join(TF_DIR, "datos-schema.json")) as f:
        schema = json.load(f)
    part = table["time_partitioning"][0]
    emulator._api("POST", "/projects/%s/datasets/%s/tables" % (p, dataset), {
        "tableReference": {"projectId": p, "datasetId": dataset,
                           "tableId": resolve(tf, table["table_id"], p)},
        "schema": {"fields": schema},
        "timePartitioning": {"type": part["type"], "field": part["field"]},
        "clustering": {"fields": table["clustering"]}})
    topics = resources(tf, "google_pubsub_topic")
    for t in topics.values():
        emulator.create_topic(resolve(tf, t["name"], p))
    for s in resources(tf, "google_pubsub_subscription").values():
        kw = {"ack_deadline": int(resolve(tf, s["ack_deadline_seconds"], p)),
              # the Duration string as terraform sends it
              "messageRetentionDuration": resolve(tf, s["message_retention_duration"], p)}
        if s.get("expiration_policy") == [{"ttl": ""}]:
            kw["never_expire"] = True
        if "dead_letter_policy" in s:
            dl = s["dead_letter_policy"][0]
            kw["dead_letter_topic"] = resolve(tf, dl["dead_letter_topic"], p)
            kw["max_delivery_attempts"] = int(resolve(tf, dl["max_delivery_attempts"], p))
        if "retry_policy" in s:
            kw["min_backoff"] = seconds(s["retry_policy"][0]["minimum_backoff"])
            kw["max_backoff"] = seconds(s["retry_policy"][0]["maximum_backoff"])
        emulator.create_subscription(resolve(tf, s["name"], p), resolve(tf, s["topic"], p), **kw)


def output_text(tf, name, project):
    text = resolve(tf, tf["output"][name]["value"], project)
    assert "${" not in text, text
    return text


def test_the_loader_and_the_module_work_on_what_terraform_makes(tf, emulator, httpd_factory):
    apply_to_emulator(tf, emulator)
    p = emulator.project
    # the loader, with terraform's loader_conf output as its settings
    settings = dict(line.split(" = ", 1) for line in
                    output_text(tf, "loader_conf", p).strip().splitlines())
    assert settings["project"] == p
    now = emulator.now()

    def stamp(age):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - age))
    emulator.publish(settings["topic"], [
        {"data": json.dumps({"id": "tf-a", "contenido": "old", "timestamp": stamp(300)})},
        {"data": json.dumps({"id": "tf-a", "contenido": "new", "timestamp": stamp(60)})},
        {"data": json.dumps({"id": "tf-b", "contenido": "b", "timestamp": stamp(120)})},
        {"data": "{not json"}])
    loader = Loader(emulator, "terraform", **settings)
    r = loader.run()
    assert r.rc == 0, r
    assert r.finished["rows_loaded"] == 3
    dead = emulator.drain(settings["dead_letter_subscription"])
    assert [m["message"]["attributes"]["datos_error"] for m in dead] == ["not_json"]

    # mod_datos, with terraform's httpd_directives output
    directives = output_text(tf, "httpd_directives", p)
    h = httpd_factory("terraform")
    h.write_config(directives + "DatosCredentials none\n"
                   "DatosBigQueryURL %s/bigquery/v2\n" % emulator.base_url +
                   'DatosStateDir "${root}/state"\n'
                   '<Location "/datos">\n  SetHandler datos\n</Location>\n')
    h.start()
    got = get(h, "/datos").json()["datos"]
    assert [(x["id"], x["contenido"]) for x in got] == [("tf-a", "new"), ("tf-b", "b")]

    # the datos_latest view: one row per id, the newest, as /datos shows it
    with open(os.path.join(TF_DIR, "datos_latest.sql")) as f:
        template = f.read()
    view = resources(tf, "google_bigquery_table")["datos_latest"]["view"][0]
    args = view["query"]
    for key in ("project", "dataset", "table"):
        assert key in args, args
    sql = (template.replace("${project}", p)
           .replace("${dataset}", resolve(tf, "${var.dataset_id}", p))
           .replace("${table}", resolve(tf, "${var.table_id}", p)))
    assert "${" not in sql
    assert view["use_legacy_sql"] is False
    answer = emulator.query(sql + " ORDER BY id")
    assert answer["jobComplete"] is True, answer
    names = [f["name"] for f in answer["schema"]["fields"]]
    assert names == ["id", "contenido", "timestamp"]
    rows = [[c["v"] for c in r["f"]] for r in answer["rows"]]
    assert [r[:2] for r in rows] == [["tf-a", "new"], ["tf-b", "b"]]
