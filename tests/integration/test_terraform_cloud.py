"""terraform/ deploys datos on Google Cloud: the checks of issue 20's
requirements, offline.

The module terraform/modules/datos is one system (the API on Cloud Run, the
loader as a Cloud Run job on Cloud Scheduler, the optional fleet tier, the
BigQuery-subscription switch, monitoring, SLOs, dashboards); the root
terraform/ instantiates it for every entry of a map of systems and holds the
release workflow's identities. terraform cannot plan here (no providers), so
these tests read what hcl2json parses, render what terraform would render
(the loader's settings file, the dashboards' JSON), and run what can run: the
loader's --check-config on its settings, the regular expressions of the
variables' validations on good and bad values."""
import glob
import json
import os
import re
import subprocess
import time

import pytest
import requests

from harness.loader import loader_path
from test_terraform import TF_DIR, TF_ROOT, parse_dir, resources
from tools.httpd import REPO_ROOT, TEST_TMP, free_port

METRIC_LIST = os.path.join(REPO_ROOT, "tests", "integration", "gcp_metric_types.txt")
DASHBOARDS = os.path.join(TF_DIR, "dashboards")


@pytest.fixture(scope="module")
def tf():
    return parse_dir(TF_DIR)


@pytest.fixture(scope="module")
def root():
    return parse_dir(TF_ROOT)


def res(tf, rtype, name):
    return tf["resource"][(rtype, name)]


def hcl_regex(validation):
    """The pattern of a can(regex("...", var.x)) validation, as Python takes it."""
    m = re.search(r'regex\("((?:[^"\\]|\\.)*)", ', validation["condition"])
    assert m, validation["condition"]
    return m.group(1).replace("\\\\", "\\")


def strings(value):
    """Every string inside a parsed body."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def all_strings(cfg):
    for kind in ("resource", "data", "ephemeral"):
        for body in cfg.get(kind, {}).values():
            yield from strings(body)
    for kind in ("locals", "variable", "output", "module"):
        for body in cfg.get(kind, {}).values():
            yield from strings(body)


# ------------------------------------------------------------------ N systems

def test_the_root_makes_one_system_per_entry_of_a_map(root, tf):
    system = root["module"]["system"]
    assert system["source"] == "./modules/datos"
    assert system["for_each"] == "${var.systems}"
    assert system["name"] == "${each.key}"
    # each system its own dataset, topics and subscriptions, named after it
    assert system["dataset_id"] == '${coalesce(each.value.dataset_id, replace(each.key, "-", "_"))}'
    for var, suffix in (("topic", "topic"), ("subscription", "subscription"),
                        ("dead_letter_topic", "dlq"),
                        ("dead_letter_subscription", "dlq-subscription")):
        assert system[var] == "${each.key}-%s" % suffix
    # ... and its own identities, named after it
    for name, acc in resources(tf, "google_service_account").items():
        assert acc["account_id"].startswith("${var.name}-"), name
    # every other name of the module carries the system's name (or its names)
    for rtype in ("google_cloud_run_v2_service", "google_cloud_run_v2_job",
                  "google_cloud_scheduler_job", "google_redis_instance",
                  "google_secret_manager_secret", "google_logging_metric",
                  "google_monitoring_custom_service"):
        for name, body in resources(tf, rtype).items():
            ident = body.get("name") or body.get("secret_id") or body.get("service_id")
            assert "${var.name}" in ident or "${local.metric_prefix}" in ident, (rtype, name)
    # the module is a module: no provider, no backend of its own
    assert "provider" not in tf
    assert not any("backend" in t for t in tf.get("terraform", []))
    # every variable of the root's systems object is passed on to the module
    systems_type = root["variable"]["systems"]["type"]
    for key in re.findall(r"(\w+)\s*=\s*optional\(", systems_type):
        assert any("each.value.%s" % key in str(v) for v in system.values()), key
    # the system names fit the longest account id: "<name>-scheduler" <= 30
    name_re = hcl_regex(root["variable"]["systems"]["validation"][0])
    assert re.fullmatch(name_re, "a" * 20) and not re.fullmatch(name_re, "a" * 21)
    assert len("a" * 20 + "-scheduler") <= 30


def test_variables_have_descriptions_types_and_validation(root, tf):
    for where, cfg in (("root", root), ("module", tf)):
        for name, v in cfg["variable"].items():
            assert v.get("description", "").strip(), (where, name)
            assert "type" in v, (where, name)
            if v["type"] != "${bool}":
                assert v.get("validation"), "%s variable %s has no validation" % (where, name)
    for path in (os.path.join(TF_ROOT, "terraform.tfvars.example"),):
        assert os.path.exists(path)


def test_the_validations_accept_good_values_and_refuse_bad_ones(root, tf):
    digest = hcl_regex(tf["variable"]["api_image"]["validation"][0])
    good = "southamerica-east1-docker.pkg.dev/p/datos/datos-httpd@sha256:" + "ab" * 32
    assert re.fullmatch(digest, good)
    assert not re.fullmatch(digest, "southamerica-east1-docker.pkg.dev/p/datos/datos-httpd:v1")
    assert not re.fullmatch(digest, "southamerica-east1-docker.pkg.dev/p/datos/datos-httpd:latest")
    assert hcl_regex(tf["variable"]["loader_image"]["validation"][0]) == digest
    assert hcl_regex(root["variable"]["api_image"]["validation"][0]) == digest
    # the example's images and systems pass the validations
    with open(os.path.join(TF_ROOT, "terraform.tfvars.example")) as f:
        example = f.read()
    for var in ("api_image", "loader_image"):
        value = re.search(r'^%s\s*=\s*"([^"]+)"' % var, example, re.M).group(1)
        assert re.fullmatch(digest, value), var
    project_re = hcl_regex(root["variable"]["project_id"]["validation"][0])
    assert re.fullmatch(project_re, re.search(r'^project_id\s*=\s*"([^"]+)"', example,
                                              re.M).group(1))
    # min_instances never lets the last warm cache go
    cond = tf["variable"]["min_instances"]["validation"][0]["condition"]
    assert "var.min_instances >= 1" in cond
    assert tf["variable"]["min_instances"]["default"] >= 1
    # options that need another variable say so
    needs = {"network": "var.fleet_cache", "subnetwork": "var.fleet_cache",
             "domain": 'var.public_access != \\"load_balancer\\"',
             "ingest_htpasswd_secret": "var.ingest_enabled"}
    for var, other in needs.items():
        conds = [v["condition"] for v in tf["variable"][var]["validation"]]
        assert any(other.replace('\\"', '"') in c for c in conds), (var, conds)
    # the deployer never gets owner or editor
    deployer = root["variable"]["deployer_roles"]
    assert "roles/owner" in deployer["validation"][0]["condition"]
    assert not set(deployer["default"]) & {"roles/owner", "roles/editor"}


# ------------------------------------------------------------------ the API

def api(tf):
    return res(tf, "google_cloud_run_v2_service", "api")


def container(tf):
    return api(tf)["template"][0]["containers"][0]


def test_the_api_runs_the_image_by_digest_kept_warm_with_probes(tf):
    svc = api(tf)
    t = svc["template"][0]
    c = container(tf)
    assert c["image"] == "${var.api_image}"
    assert t["service_account"] == "${google_service_account.reader.email}"
    assert t["scaling"][0]["min_instance_count"] == "${var.min_instances}"
    assert t["max_instance_request_concurrency"] == "${var.concurrency}"
    # CPU always allocated: background refreshes run between requests
    assert c["resources"][0]["cpu_idle"] is False
    # traffic only with an answer; liveness never touches Google
    startup = c["startup_probe"][0]["http_get"][0]
    liveness = c["liveness_probe"][0]["http_get"][0]
    assert startup["path"] == "/health?ready"
    assert liveness["path"] == "/health"
    assert startup["port"] == liveness["port"] == c["ports"][0]["container_port"] == 8080
    # the image listens on $PORT, 8080 by default, which Cloud Run sets to container_port
    with open(os.path.join(REPO_ROOT, "docker", "httpd.Dockerfile")) as f:
        assert "ENV PORT=8080" in f.read()


def test_the_api_is_configured_by_the_images_datos_variables(tf):
    env = tf["locals"]["api_env"]
    names = set(re.findall(r"\b(DATOS_[A-Z_]+)\s*=", env))
    assert {"DATOS_PROJECT", "DATOS_TABLE", "DATOS_LOCATION", "DATOS_CREDENTIALS",
            "DATOS_CACHE", "DATOS_INGEST", "DATOS_TOPIC"} <= names
    with open(os.path.join(REPO_ROOT, "docker", "httpd", "datos-container.conf")) as f:
        container_conf = f.read()
    with open(os.path.join(REPO_ROOT, "conf", "datos.conf")) as f:
        datos_conf = f.read()
    understood = set(re.findall(r"<IfDefine (DATOS_[A-Z_]+)>", container_conf + datos_conf))
    assert names - understood == set()
    # the fleet tier: the shared cache is the Memorystore instance
    assert 'redis:${google_redis_instance.cache[0].host}:${google_redis_instance.cache[0].port}' \
        in env


def test_the_fleet_key_reaches_the_image_as_a_variable_not_as_a_file_of_root(tf):
    """The fleet tier's key (DatosCacheSecretFile) is DATOS_CACHE_SECRET, a secret
    variable pinned to the version terraform wrote, which the image's entry point
    writes to a file of its own user, mode 0600. Not a secret volume: the image runs as
    www-data from the start, and a second generation Cloud Run secret file belongs to
    root, so with a mode mod_datos accepts for a key (no group or other bits) httpd
    could not read it, and with one it could (0444) every user could."""
    assert api(tf)["template"][0]["execution_environment"] == "EXECUTION_ENVIRONMENT_GEN2"
    with open(os.path.join(REPO_ROOT, "docker", "httpd.Dockerfile")) as f:
        user = [ln.split()[1] for ln in f if ln.startswith("USER ")][-1]
    assert user.split(":")[0] != "0"
    assert "DATOS_CACHE_SECRET" not in tf["locals"]["api_env"]
    secret_env = [e for e in dynamic_blocks(container(tf), "env")
                  if e["content"][0]["name"] == "DATOS_CACHE_SECRET"]
    assert len(secret_env) == 1
    assert secret_env[0]["for_each"] == "${var.fleet_cache ? [1] : []}"
    ref = secret_env[0]["content"][0]["value_source"][0]["secret_key_ref"][0]
    assert ref["secret"] == "${google_secret_manager_secret.cache_key[0].secret_id}"
    assert ref["version"] == "${google_secret_manager_secret_version.cache_key[0].version}"
    # no volume carries it (nor any other copy of it in a file of root)
    volumes = [v["content"][0] for v in dynamic_blocks(api(tf)["template"][0], "volumes")]
    assert all(v["secret"][0]["secret"] != ref["secret"] for v in volumes if "secret" in v)
    # the entry point turns the variable into DatosCacheSecretFile's file, private to
    # its user, and leaves it out of apache2's environment (test_docker_files.py runs it)
    with open(os.path.join(REPO_ROOT, "docker", "httpd", "entrypoint.sh")) as f:
        entry = f.read()
    assert "umask 077" in entry and "unset DATOS_CACHE_SECRET" in entry
    with open(os.path.join(REPO_ROOT, "docker", "httpd", "datos-container.conf")) as f:
        assert 'DatosCacheSecretFile "${DATOS_CACHE_SECRET_FILE}"' in f.read()
    # the key is generated and written write-only: never in the state
    version = res(tf, "google_secret_manager_secret_version", "cache_key")
    assert "secret_data" not in version
    assert version["secret_data_wo"] == "${ephemeral.random_password.cache_key[0].result}"
    assert ("random_password", "cache_key") in tf["ephemeral"]


def dynamic_blocks(body, kind):
    """The dynamic "kind" blocks of a body: [{"for_each": ..., "content": [...]}]."""
    dyn = body.get("dynamic", {})
    if isinstance(dyn, list):
        return [b for d in dyn for b in d.get(kind, [])]
    return dyn.get(kind, [])


def test_public_access_is_explicit_and_allusers_appears_once(root, tf):
    assert tf["variable"]["public_access"]["default"] == "none"
    public = res(tf, "google_cloud_run_v2_service_iam_member", "public")
    assert public["member"] == "allUsers"
    assert public["role"] == "roles/run.invoker"
    assert public["count"] == '${var.public_access == "none" ? 0 : 1}'
    # no other public principal, anywhere
    for cfg in (root, tf):
        for key, body in cfg["resource"].items():
            if key == ("google_cloud_run_v2_service_iam_member", "public"):
                continue
            for s in strings(body):
                assert "allUsers" not in s and "allAuthenticatedUsers" not in s, key
    # ingress follows the choice: only the load balancer when there is one
    assert api(tf)["ingress"] == \
        '${local.load_balancer_enabled ? "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" : ' \
        '"INGRESS_TRAFFIC_ALL"}'
    assert tf["locals"]["load_balancer_enabled"] == '${var.public_access == "load_balancer"}'


def test_the_load_balancer_has_a_serverless_neg_and_a_rate_limit_per_ip(tf):
    lb_types = ["google_compute_region_network_endpoint_group", "google_compute_security_policy",
                "google_compute_backend_service", "google_compute_url_map",
                "google_compute_managed_ssl_certificate", "google_compute_target_https_proxy",
                "google_compute_global_address", "google_compute_global_forwarding_rule"]
    for t in lb_types:
        assert res(tf, t, "api")["count"] == "${local.load_balancer_enabled ? 1 : 0}", t
    neg = res(tf, "google_compute_region_network_endpoint_group", "api")
    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert neg["cloud_run"][0]["service"] == "${google_cloud_run_v2_service.api.name}"
    backend = res(tf, "google_compute_backend_service", "api")
    assert backend["security_policy"] == "${google_compute_security_policy.api[0].id}"
    assert backend["backend"][0]["group"] == \
        "${google_compute_region_network_endpoint_group.api[0].id}"
    assert backend["log_config"][0]["enable"] is True
    rules = res(tf, "google_compute_security_policy", "api")["rule"]
    throttle = [r for r in rules if r["action"] in ("throttle", "rate_based_ban")]
    assert len(throttle) == 1
    opts = throttle[0]["rate_limit_options"][0]
    assert opts["enforce_on_key"] == "IP"
    assert opts["exceed_action"] == "deny(429)"
    assert opts["rate_limit_threshold"][0]["count"] == "${var.rate_limit_per_minute}"
    fr = res(tf, "google_compute_global_forwarding_rule", "api")
    assert fr["port_range"] == "443"
    assert fr["target"] == "${google_compute_target_https_proxy.api[0].id}"


def test_the_fleet_tier_is_memorystore_over_direct_vpc_egress(tf, root):
    redis = res(tf, "google_redis_instance", "cache")
    assert redis["count"] == "${var.fleet_cache ? 1 : 0}"
    assert redis["authorized_network"] == "${var.network}"
    assert tf["variable"]["fleet_cache"]["default"] is False
    vpc = dynamic_blocks(api(tf)["template"][0], "vpc_access")
    assert len(vpc) == 1 and vpc[0]["for_each"] == "${var.fleet_cache ? [1] : []}"
    iface = vpc[0]["content"][0]["network_interfaces"][0]
    assert iface == {"network": "${var.network}", "subnetwork": "${var.subnetwork}"}
    assert vpc[0]["content"][0]["egress"] == "PRIVATE_RANGES_ONLY"
    # the root makes the network only when some system asks for the tier
    assert res(root, "google_compute_network", "datos")["count"] == "${local.fleet ? 1 : 0}"
    system = root["module"]["system"]
    assert system["network"] == \
        "${each.value.fleet_cache ? google_compute_network.datos[0].id : null}"


def test_post_datos_reads_its_users_from_a_mounted_secret(tf):
    args = tf["locals"]["api_args"]
    assert 'AuthUserFile ${local.htpasswd_dir}/htpasswd' in args
    volumes = {v["content"][0]["name"]: v for v in
               dynamic_blocks(api(tf)["template"][0], "volumes")}
    users = volumes["ingest-users"]
    assert users["for_each"] == "${var.ingest_enabled ? [1] : []}"
    assert users["content"][0]["secret"][0]["secret"] == "${var.ingest_htpasswd_secret}"
    assert users["content"][0]["secret"][0]["items"][0]["path"] == "htpasswd"


# ------------------------------------------------------------------ the loader

def loader_job(tf):
    return res(tf, "google_cloud_run_v2_job", "loader")


def test_the_loader_is_one_task_never_retried_with_a_timeout_above_its_longest_run(tf):
    job = loader_job(tf)["template"][0]
    task = job["template"][0]
    assert job["task_count"] == 1 and job["parallelism"] == 1
    assert task["max_retries"] == 0
    assert task["service_account"] == "${google_service_account.loader.email}"
    assert task["containers"][0]["image"] == "${var.loader_image}"
    assert task["timeout"] == "${local.loader_task_timeout}s"
    # the longest run: pulling, then the batch in flight's load job and retries
    loc = tf["locals"]
    assert loc["loader_longest_run"] == \
        "${var.loader_max_seconds + var.loader_job_timeout + local.loader_retry_deadline}"
    assert loc["loader_task_timeout"] == "${local.loader_longest_run + 120}"
    v = tf["variable"]
    longest = v["loader_max_seconds"]["default"] + v["loader_job_timeout"]["default"] + \
        loc["loader_retry_deadline"]
    assert longest + 120 > longest
    # the bounds the timeout is computed from are the loader's own settings
    conf = render_loader_conf(tf)
    assert "max_seconds = %ds" % v["loader_max_seconds"]["default"] in conf
    assert "job_timeout = %ds" % v["loader_job_timeout"]["default"] in conf
    assert "retry_deadline = %ds" % loc["loader_retry_deadline"] in conf
    # the default pull phase ends before the next tick
    assert v["loader_max_seconds"]["default"] < v["loader_interval_minutes"]["default"] * 60


def test_the_journal_is_on_a_cloud_storage_volume_and_the_settings_are_mounted(tf):
    task = loader_job(tf)["template"][0]["template"][0]
    mounts = {m["name"]: m["mount_path"] for m in task["containers"][0]["volume_mounts"]}
    volumes = {v["name"]: v for v in task["volumes"]}
    assert mounts["state"] == "${local.loader_state_dir}"
    gcs = volumes["state"]["gcs"][0]
    assert gcs["bucket"] == "${google_storage_bucket.loader_state.name}"
    assert gcs["read_only"] is False
    # the image's loader runs as uid 10001 and its state_dir is that path
    with open(os.path.join(REPO_ROOT, "docker", "loader.Dockerfile")) as f:
        dockerfile = f.read()
    assert "USER 10001:10001" in dockerfile
    assert "uid=10001" in gcs["mount_options"] and "gid=10001" in gcs["mount_options"]
    with open(os.path.join(REPO_ROOT, "docker", "loader", "loader.conf")) as f:
        image_state = re.search(r"^state_dir = (\S+)$", f.read(), re.M).group(1)
    assert tf["locals"]["loader_state_dir"] == image_state
    assert "state_dir = %s" % image_state in render_loader_conf(tf)
    # the settings replace the image's /etc/datos/loader.conf, which its entry point reads
    assert mounts["conf"] == "/etc/datos"
    assert volumes["conf"]["secret"][0]["items"][0]["path"] == "loader.conf"
    assert '"--config", "/etc/datos/loader.conf"' in dockerfile
    bucket = res(tf, "google_storage_bucket", "loader_state")
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["uniform_bucket_level_access"] is True


def render_loader_conf(tf, **override):
    """loader.conf.tftpl as templatefile renders it with the module's defaults
    (the template has nothing but ${name} placeholders)."""
    with open(os.path.join(TF_DIR, "loader.conf.tftpl")) as f:
        template = f.read()
    v = {k: b.get("default") for k, b in tf["variable"].items()}
    values = {
        "name": v["name"], "project": "my-project",
        "table": "%s.%s" % (v["dataset_id"], v["table_id"]), "location": v["location"],
        "subscription": v["subscription"], "dead_letter_topic": v["dead_letter_topic"],
        "topic": v["topic"], "dead_letter_subscription": v["dead_letter_subscription"],
        "max_seconds": v["loader_max_seconds"], "job_timeout": v["loader_job_timeout"],
        "retry_deadline": tf["locals"]["loader_retry_deadline"],
        "state_dir": tf["locals"]["loader_state_dir"],
    }
    values.update(override)
    # the module passes exactly these keys
    passed = set(re.findall(r"^\s+(\w+)\s+=", tf["locals"]["loader_conf"], re.M))
    assert passed == set(values), passed ^ set(values)
    placeholders = set(re.findall(r"\$\{(\w+)\}", template))
    assert placeholders == set(values)
    return re.sub(r"\$\{(\w+)\}", lambda m: str(values[m.group(1)]), template)


def test_the_loader_accepts_the_settings_terraform_writes(tf):
    path = os.path.join(TEST_TMP, "terraform-loader.conf")
    os.makedirs(TEST_TMP, exist_ok=True)
    with open(path, "w") as f:
        f.write(render_loader_conf(tf))
    if not os.path.exists(loader_path()):
        pytest.skip("datos-loader is not built (make)")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C"}
    if os.environ.get("DATOS_SANITIZE") == "1":
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    p = subprocess.run([loader_path(), "--config", path, "--check-config"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "configuration valid" in p.stdout
    assert "project: my-project" in p.stdout
    # and refuses them when a value is broken: the check is real
    with open(path, "w") as f:
        f.write(render_loader_conf(tf, max_seconds="lots"))
    p = subprocess.run([loader_path(), "--config", path, "--check-config"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr


def test_cloud_scheduler_alone_starts_the_loader_through_the_run_admin_api(tf, root):
    schedulers = {**resources(tf, "google_cloud_scheduler_job"),
                  **resources(root, "google_cloud_scheduler_job")}
    assert list(schedulers) == ["loader"]
    s = schedulers["loader"]
    assert s["schedule"] == "${var.loader_schedule}"
    assert tf["variable"]["loader_schedule"]["default"] == "*/5 * * * *"
    assert s["count"] == "${local.loader_scheduled ? 1 : 0}"
    target = s["http_target"][0]
    assert target["http_method"] == "POST"
    assert target["uri"] == "https://run.googleapis.com/v2/projects/${var.project_id}/" \
        "locations/${var.region}/jobs/${google_cloud_run_v2_job.loader.name}:run"
    assert target["oauth_token"][0]["service_account_email"] == \
        "${google_service_account.scheduler.email}"
    assert s["retry_config"][0]["retry_count"] == 0


# ------------------------------------------------------------------ the switch

def test_the_bigquery_subscription_switch(tf):
    sub = res(tf, "google_pubsub_subscription", "loader")
    cfg = dynamic_blocks(sub, "bigquery_config")
    assert len(cfg) == 1 and cfg[0]["for_each"] == "${var.bigquery_subscription ? [1] : []}"
    body = cfg[0]["content"][0]
    assert body["table"] == "${local.table_ref}"
    assert body["use_table_schema"] is True
    assert body["write_metadata"] == "${local.table_has_metadata}"
    # the same subscription keeps its dead-letter topic
    assert sub["dead_letter_policy"][0]["dead_letter_topic"] == \
        "${google_pubsub_topic.dead_letter.id}"
    assert tf["variable"]["bigquery_subscription"]["default"] is False
    # write_metadata only where the table has every metadata column: not datos's table
    assert tf["locals"]["metadata_columns"] == \
        ["subscription_name", "message_id", "publish_time", "attributes"]
    assert tf["locals"]["table_has_metadata"] == \
        "${length(setsubtract(local.metadata_columns, local.table_columns)) == 0}"
    with open(os.path.join(TF_DIR, "datos-schema.json")) as f:
        columns = {c["name"] for c in json.load(f)}
    assert not {"subscription_name", "message_id", "publish_time", "attributes"} <= columns
    # Pub/Sub's agent may write the table only while the switch is on
    grant = res(tf, "google_bigquery_table_iam_member", "pubsub_writes_table")
    assert grant["count"] == "${var.bigquery_subscription ? 1 : 0}"
    assert grant["member"] == "${local.pubsub_service_agent}"
    assert grant["role"] == "roles/bigquery.dataEditor"
    # and the loader's schedule goes: one writer of the table
    assert tf["locals"]["loader_scheduled"] == "${!var.bigquery_subscription}"


# ------------------------------------------------------------------ monitoring

def known_metric_types():
    types = set()
    with open(METRIC_LIST) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                types.add(line.split("|")[0].strip())
    return types


def log_metric_types(tf):
    """logging.googleapis.com/user/<name> of each google_logging_metric, with
    ${local.metric_prefix} as written (the references use the same form)."""
    return {"logging.googleapis.com/user/" + b["name"]: name
            for name, b in resources(tf, "google_logging_metric").items()}


def render_dashboard(path):
    """A dashboard template filled with sample names, parsed as the JSON it must be."""
    with open(path) as f:
        text = f.read()
    keys = set(re.findall(r"\$\{(\w+)\}", text))
    with open(os.path.join(TF_DIR, "dashboards.tf")) as f:
        passed = set(re.findall(r"^\s+(\w+)\s+=", f.read().split("dashboard_vars = {")[1]
                                .split("}")[0], re.M))
    assert keys <= passed, keys - passed
    sample = {k: "sample_" + k for k in keys}
    sample["metric_prefix"] = "${local.metric_prefix}"
    return json.loads(re.sub(r"\$\{(\w+)\}", lambda m: sample[m.group(1)], text))


def dashboard_strings(d):
    yield from strings(d)


def named_metric_types(text):
    """Metric types named by a filter or a PromQL query."""
    found = re.findall(r'metric\.type\s*=\s*\\?"([^"\\]+)\\?"', text)
    for m in re.findall(r"logging_googleapis_com:user_([A-Za-z0-9_{}$.]+?)_sum\b", text):
        found.append("logging.googleapis.com/user/" + m)
    return found


def test_every_metric_type_named_exists(tf, root):
    known = known_metric_types()
    defined = set(log_metric_types(tf))
    names = []
    for s in all_strings(tf):
        names += named_metric_types(s)
    for s in all_strings(root):
        names += named_metric_types(s)
    for path in glob.glob(os.path.join(DASHBOARDS, "*.json.tftpl")):
        for s in dashboard_strings(render_dashboard(path)):
            names += named_metric_types(s)
    assert len(names) > 40
    unknown = set()
    for n in names:
        n = n.replace("${google_logging_metric.", "").replace(".name}", "")
        if n.startswith("logging.googleapis.com/user/"):
            ref = n[len("logging.googleapis.com/user/"):]
            if ref in resources(tf, "google_logging_metric"):
                continue
            if n in defined:
                continue
        if n in known:
            continue
        unknown.add(n)
    assert not unknown, "metric types neither in %s nor defined by terraform: %s" % (
        os.path.relpath(METRIC_LIST, REPO_ROOT), sorted(unknown))


def test_a_made_up_metric_type_would_be_caught(tf):
    known = known_metric_types()
    assert "run.googleapis.com/request_count" in known
    assert "run.googleapis.com/request_counts" not in known
    assert named_metric_types('metric.type=\\"pubsub.googleapis.com/x\\"') == \
        ["pubsub.googleapis.com/x"]


def loader_run_finished_fields():
    with open(os.path.join(REPO_ROOT, "loader", "loader_run.c")) as f:
        src = f.read()
    block = src[src.index('"run_finished"'):]
    block = block[:block.index("loader_emit(ev)")]
    return set(re.findall(r'ev,\s*"(\w+)"', block))


def test_the_log_based_metrics_read_the_loaders_run_finished_lines(tf):
    fields = loader_run_finished_fields()
    assert {"exit_code", "rows_loaded", "dead_lettered", "load_jobs"} <= fields
    metrics = resources(tf, "google_logging_metric")
    run_finished = tf["locals"]["run_finished"]
    assert 'jsonPayload.event=\\"run_finished\\"' in run_finished.replace('"', '\\"') or \
        'jsonPayload.event="run_finished"' in run_finished
    for name in ("loader_runs", "loader_rows", "loader_dead_lettered", "loader_load_jobs"):
        assert metrics[name]["filter"] == "${local.run_finished}", name
    extracted = {}
    for name, m in metrics.items():
        for expr in [m.get("value_extractor", "")] + list(m.get("label_extractors", {}).values()):
            for field in re.findall(r"EXTRACT\(jsonPayload\.(\w+)\)", expr):
                extracted.setdefault(field, []).append(name)
    assert set(extracted) == {"exit_code", "rows_loaded", "dead_lettered", "load_jobs"}
    assert set(extracted) <= fields, set(extracted) - fields
    assert metrics["loader_runs"]["label_extractors"]["exit_code"] == \
        "EXTRACT(jsonPayload.exit_code)"
    # the loader's docs name the same fields
    with open(os.path.join(REPO_ROOT, "docs", "loader.md")) as f:
        doc_line = [l for l in f if l.startswith("| `run_finished`")][0]
    for field in extracted:
        assert "`%s`" % field in doc_line, field


def policies(tf):
    return resources(tf, "google_monitoring_alert_policy")


def conditions(policy):
    return [c for c in policy["conditions"]]


def test_the_alert_table(tf):
    p = policies(tf)
    lat = conditions(p["api_latency"])[0]["condition_threshold"][0]
    assert 'run.googleapis.com/request_latencies' in lat["filter"]
    assert lat["aggregations"][0]["cross_series_reducer"] == "REDUCE_PERCENTILE_95"
    assert lat["threshold_value"] == "${var.latency_threshold_ms}"
    assert tf["variable"]["latency_threshold_ms"]["default"] == 1000
    err = conditions(p["api_errors"])[0]["condition_threshold"][0]
    assert 'response_code_class=\\"5xx\\"' in err["filter"].replace('"', '\\"') or \
        'response_code_class="5xx"' in err["filter"]
    assert "run.googleapis.com/request_count" in err["denominator_filter"]
    assert err["threshold_value"] == "${var.error_ratio_threshold}"
    assert tf["variable"]["error_ratio_threshold"]["default"] == 0.02
    backlog = [c["condition_threshold"][0] for c in conditions(p["backlog"])]
    assert any("subscription/num_undelivered_messages" in c["filter"] and
               c["threshold_value"] == "${var.backlog_threshold}" for c in backlog)
    assert any("subscription/oldest_unacked_message_age" in c["filter"] and
               c["threshold_value"] == "${var.oldest_unacked_threshold_seconds}"
               for c in backlog)
    dlq = [c["condition_threshold"][0]["filter"] for c in conditions(p["dead_letters"])]
    assert any("${local.dlq_resource}" in f and "topic/send_message_operation_count" in f
               for f in dlq)
    failing = [c["condition_threshold"][0]["filter"] for c in conditions(p["loader_failing"])]
    assert all("${google_logging_metric.loader_runs.name}" in f for f in failing)
    assert any('exit_code=\\"2\\"' in f.replace('"', '\\"') or 'exit_code="2"' in f
               for f in failing)
    absent = conditions(p["loader_absent"])[0]["condition_absent"][0]
    assert "${google_logging_metric.loader_runs.name}" in absent["filter"]
    assert absent["duration"] == "${local.loader_absent_s}s"
    assert tf["locals"]["loader_absent_s"] == "${3 * var.loader_interval_minutes * 60}"
    # the uptime check asks /health
    up = res(tf, "google_monitoring_uptime_check_config", "health")
    assert up["http_check"][0]["path"] == "/health"
    assert "check_passed" in conditions(p["api_down"])[0]["condition_threshold"][0]["filter"]
    # every policy notifies the channels of the variable, none written here
    for name, pol in p.items():
        assert pol["notification_channels"] in ("${local.alert_channels}",), name
    assert tf["locals"]["alert_channels"] == "${var.notification_channels}"
    for body in tf["resource"].values():
        for s in strings(body):
            assert "notificationChannels/" not in s, s


def test_slos_with_multiwindow_multi_burn_rate_alerts(tf):
    slos = resources(tf, "google_monitoring_slo")
    assert set(slos) == {"availability", "latency", "freshness"}
    for s in slos.values():
        assert s["rolling_period_days"] == 28
        assert s["service"] == "${google_monitoring_custom_service.datos.service_id}"
    v = tf["variable"]
    assert v["slo_availability_goal"]["default"] == 0.999
    assert v["slo_latency_goal"]["default"] == 0.99 and v["slo_latency_ms"]["default"] == 300
    assert v["slo_freshness_goal"]["default"] == 0.99
    assert v["slo_freshness_seconds"]["default"] == 600
    avail = slos["availability"]["request_based_sli"][0]["good_total_ratio"][0]
    assert "5xx" in avail["bad_service_filter"] and "request_count" in avail["total_service_filter"]
    cut = slos["latency"]["request_based_sli"][0]["distribution_cut"][0]
    assert "request_latencies" in cut["distribution_filter"]
    assert cut["range"][0]["max"] == "${var.slo_latency_ms}"
    fresh = slos["freshness"]["windows_based_sli"][0]["metric_mean_in_range"][0]
    assert "oldest_unacked_message_age" in fresh["time_series"]
    assert fresh["range"][0]["max"] == "${var.slo_freshness_seconds}"
    # 14.4x over 1 h and 5 min, 6x over 6 h and 30 min, for each SLO, both windows ANDed
    assert tf["locals"]["burn_rates"] == {
        "fast": {"rate": 14.4, "long": "3600s", "short": "300s"},
        "slow": {"rate": 6, "long": "21600s", "short": "1800s"}}
    burn = res(tf, "google_monitoring_alert_policy", "burn_rate")
    assert burn["for_each"] == "${local.burn_alerts}"
    assert "setproduct(keys(local.slos), keys(local.burn_rates))" in tf["locals"]["burn_alerts"]
    assert burn["combiner"] == "AND"
    windows = [c["condition_threshold"][0] for c in burn["conditions"]]
    assert [w["filter"] for w in windows] == [
        'select_slo_burn_rate(\"${each.value.slo}\", \"${each.value.long}\")',
        'select_slo_burn_rate(\"${each.value.slo}\", \"${each.value.short}\")']
    assert all(w["threshold_value"] == "${each.value.rate}" for w in windows)
    assert tf["locals"]["slos"] == {
        name: "${google_monitoring_slo.%s.name}" % name
        for name in ("availability", "latency", "freshness")}


def test_the_four_dashboards(tf):
    dash = res(tf, "google_monitoring_dashboard", "datos")
    assert dash["for_each"] == '${toset(["executive", "operations", "scaling-cost", "security"])}'
    titles = {}
    for name in ("executive", "operations", "scaling-cost", "security"):
        d = render_dashboard(os.path.join(DASHBOARDS, name + ".json.tftpl"))
        assert d["displayName"].startswith("datos sample_name: ")
        widgets = d["gridLayout"]["widgets"]
        assert widgets
        titles[name] = " | ".join(w["title"] for w in widgets).lower()
    for word in ("availability", "latency", "throughput", "cost"):
        assert word in titles["executive"], word
    for word in ("instances", "bytes billed", "load jobs", "1,500"):
        assert word in titles["scaling-cost"], word
    for word in ("401", "403", "cloud armor", "iam"):
        assert word in titles["security"], word
    for word in ("undelivered", "oldest", "loader runs", "dead-letter"):
        assert word in titles["operations"], word


# ------------------------------------------------------------------ CI/CD and secrets

def test_workload_identity_federation_and_the_image_repository(root):
    provider = res(root, "google_iam_workload_identity_pool_provider", "github")
    assert provider["oidc"][0]["issuer_uri"] == "https://token.actions.githubusercontent.com"
    assert provider["attribute_condition"] == \
        'assertion.repository == "${var.github_repository}"'
    repo = res(root, "google_artifact_registry_repository", "images")
    assert repo["format"] == "DOCKER"
    assert repo["docker_config"][0]["immutable_tags"] is True
    bindings = {name: b for name, b in resources(root, "google_service_account_iam_member").items()}
    assert bindings["ci_deploy_from_github"]["member"] == "${local.deploy_subject}"
    assert root["locals"]["deploy_subject"].endswith(
        "/subject/repo:${var.github_repository}:environment:${var.github_deploy_environment}")
    assert all(b["role"] == "roles/iam.workloadIdentityUser" for b in bindings.values())
    # the pusher may write images and nothing else
    push = [(t, b["role"]) for (t, _), b in root["resource"].items()
            if t.endswith("_iam_member") and
            "serviceAccount:${google_service_account.ci_push.email}" in members(b)]
    assert push == [("google_artifact_registry_repository_iam_member",
                     "roles/artifactregistry.writer")]
    # no key anywhere
    for cfg in (root, parse_dir(TF_DIR)):
        assert not resources(cfg, "google_service_account_key")
        assert not any(t.endswith("_iam_policy") or t.endswith("_iam_binding")
                       for t, _ in cfg["resource"]), "authoritative IAM would drop others' grants"


def members(body):
    if body.get("member") == "${each.value}" and isinstance(body.get("for_each"), dict):
        return list(body["for_each"].values())
    return [body["member"]] if "member" in body else []


def test_no_state_and_no_secret_in_the_repository(root, tf):
    files = subprocess.run(["git", "ls-files", "terraform"], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        assert not re.search(r"\.tfstate|(^|/)\.terraform/|\.tfplan$|(^|/)terraform\.tfvars$", f), f
    with open(os.path.join(TF_ROOT, ".gitignore")) as f:
        ignored = f.read()
    for pattern in ("*.tfstate", ".terraform/", "terraform.tfvars"):
        assert pattern in ignored
    backend = [t for t in root["terraform"] if "backend" in t[0]]
    assert backend and "bucket" not in json.dumps(backend), "the state bucket is given at init"
    # the only secret data terraform writes in clear is the loader's settings
    versions = resources(tf, "google_secret_manager_secret_version")
    assert {n for n, b in versions.items() if "secret_data" in b} == {"loader_conf"}
    assert versions["loader_conf"]["secret_data"] == "${local.loader_conf}"
    secret_words = re.compile(r"password|private_key|BEGIN [A-Z ]*PRIVATE|api[_-]?key",
                              re.I)
    with open(os.path.join(TF_DIR, "loader.conf.tftpl")) as f:
        assert not secret_words.search(f.read())
    with open(os.path.join(TF_ROOT, "terraform.tfvars.example")) as f:
        example = f.read()
    assert not re.search(r"-----BEGIN|\"private_key\"|AIza[0-9A-Za-z_-]{20}", example)


def api_args(tf):
    """The container's arguments: the list literal of local.api_args."""
    text = tf["locals"]["api_args"]
    literal = text[text.index("[") + 1:text.index("]")]
    return [json.loads(a) for a in re.findall(r'"(?:[^"\\]|\\.)*"', literal)]


def test_the_arguments_point_datos_confs_login_at_the_mounted_file(tf):
    """apache2 with datos.conf's own <Location "/datos"> login block (AuthUserFile
    in /etc/apache2, where Cloud Run cannot mount a file) and the container's
    arguments: a POST is let in with a user of the file where the secret is
    mounted, and refused without one."""

    args = api_args(tf)
    assert args[0::2] == ["-c"] * 3
    htpasswd_dir = tf["locals"]["htpasswd_dir"]
    with open(os.path.join(REPO_ROOT, "conf", "datos.conf")) as f:
        datos_conf = f.read()
    ingest = datos_conf[datos_conf.index("<IfDefine DATOS_INGEST>"):]
    limit = ingest[ingest.index("<LimitExcept"):ingest.index("</LimitExcept>") + 14]
    assert "AuthUserFile /etc/apache2/datos-ingest.htpasswd" in limit
    d = os.path.join(TEST_TMP, "terraform-ingest-args")
    os.makedirs(d, exist_ok=True)
    mounted = os.path.join(d, "mounted")
    os.makedirs(mounted, exist_ok=True)
    subprocess.run(["htpasswd", "-cbB", os.path.join(mounted, "htpasswd"), "sensor-1", "s3cret"],
                   check=True, capture_output=True)
    with open(os.path.join(d, "datos"), "w") as f:
        f.write("ok\n")
    port = free_port()
    mods = "/usr/lib/apache2/modules"
    conf = os.path.join(d, "httpd.conf")
    with open(conf, "w") as f:
        f.write("ServerRoot %s\nServerName localhost\nPidFile %s/httpd.pid\n"
                "ErrorLog %s/error.log\nListen 127.0.0.1:%d\nDocumentRoot %s\n" % (d, d, d, port, d))
        if os.geteuid() == 0:
            f.write("User nobody\nGroup nogroup\n")
        for m in ("mpm_event", "authz_core", "authz_user", "authn_core", "authn_file",
                  "auth_basic"):
            f.write("LoadModule %s_module %s/mod_%s.so\n" % (m, mods, m))
        f.write('<Location "/datos">\n%s\n</Location>\n' % limit)
    # the mounted secret's directory, as the container sees it, is this test's folder
    assert htpasswd_dir.startswith("/run/secrets/")
    argv = [a.replace("${local.htpasswd_dir}", mounted) for a in args]
    server = subprocess.Popen(["/usr/sbin/apache2", "-f", conf, "-DFOREGROUND"] + argv,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = "http://127.0.0.1:%d/datos" % port
        for _ in range(200):
            assert server.poll() is None, server.communicate()[0]
            try:
                requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        assert requests.get(url, timeout=5).status_code == 200
        assert requests.post(url, timeout=5).status_code == 401
        assert requests.post(url, auth=("sensor-1", "s3cret"), timeout=5).status_code == 200
        assert requests.post(url, auth=("sensor-1", "wrong"), timeout=5).status_code == 401
    finally:
        server.terminate()
        out = server.communicate(timeout=30)[0]
    assert "AH00" not in out.replace("AH00558", ""), out
