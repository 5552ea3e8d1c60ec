"""Offline checks of the deploy artifacts: Terraform, checkov, the Dockerfile, docker-compose and
the packaging script. No provider download and no Docker engine are needed (or available here);
what only a real `terraform plan` can tell is listed in docs/deploy.md."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from heavylift.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "infra" / "terraform"

# Settings that are deliberately NOT set on a role, with the reason. Keep this list small: every
# other Settings field must be wired in infra/terraform/env.tf.
NOT_ON_GCP = {
    "PORT": "Cloud Functions set it; the worker pool keeps the default 8080, which its probes and "
            "metrics sidecar read (test_worker_pool_probes_and_grace)",
    "REDIS_URL": "REDIS_HOST/PORT/TLS + the REDIS_PASSWORD secret keep the AUTH string out of env",
    "PUBLIC_BASE_URL": "only file:// upload URLs use it; on GCP they are signed gs:// URLs",
    "GCS_SIGNING_CREDENTIALS_FILE": "local signing only; on GCP the IAM Credentials API signs",
    "S3_ENDPOINT_URL": "s3:// backends only; GCP uses gs://",
    "OPENAI_BASE_URL": "the client's default endpoint; set through var.extra_env for a gateway",
    "BQ_EMULATOR_HOST": "local emulator only; on GCP the client talks to BigQuery itself",
    "BQ_STORAGE_EMULATOR_HOST": "local emulator only",
    "QUEUE_CONCURRENCY": "optional per-queue cap, unset by default; set through var.extra_env",
    "API_KEYS_FILE": "local only: on GCP the keys document is the API_KEYS_JSON secret",
}
NOT_ON_WORKER = {
    "GCS_SIGNING_SERVICE_ACCOUNT": "the worker never hands out signed upload URLs",
}
NOT_ON_FUNCTIONS: dict[str, str] = {}
# Names the issues require that may not be Settings fields yet; wiring them early is fine.
EXPECTED_FROM_ISSUES = {"MAX_UPLOAD_BYTES", "API_KEYS", "SYNC_THRESHOLD", "CHUNK_SIZE",
                        "CHUNK_DELAY_MS"}

# --- reading HCL -------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """python-hcl2 8 keeps quotes around labels and strings and marks blocks: strip both."""
    if isinstance(value, dict):
        return {_unquote(k): _clean(v) for k, v in value.items()
                if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


@cache
def tf_files() -> dict[str, dict[str, Any]]:
    parsed = {}
    for path in sorted(TF.glob("*.tf")):
        with path.open() as handle:
            parsed[path.name] = _clean(hcl2.load(handle))
    return parsed


def blocks(kind: str) -> dict[str, Any]:
    """Top-level blocks of one kind: {"type.name": body} for resources, {name: body} else."""
    found: dict[str, Any] = {}
    for doc in tf_files().values():
        for entry in doc.get(kind, []):
            for label, body in entry.items():
                if kind in ("resource", "data"):
                    for name, inner in body.items():
                        found[f"{label}.{name}"] = inner
                else:
                    found[label] = body
    return found


def resource(address: str) -> dict[str, Any]:
    resources = blocks("resource")
    assert address in resources, f"{address} is missing from infra/terraform"
    body: dict[str, Any] = resources[address]
    return body


@cache
def tf_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for doc in tf_files().values():
        for entry in doc.get("locals", []):
            merged.update(entry)
    return merged


def map_keys(expr: Any) -> set[str]:
    """Keys of a map expression: a literal, `local.x`, or `merge(...)` of those (vars add none)."""
    if isinstance(expr, dict):
        return set(expr)
    assert isinstance(expr, str), expr
    inner = expr.removeprefix("${").removesuffix("}")
    literal_keys = set(re.findall(r"[{,]\s*([A-Z][A-Z0-9_]*)\s*=", inner))
    # A `{for ... : "NAME" => value}` map (a key present only when its resource exists).
    literal_keys |= set(re.findall(r':\s*"([A-Z][A-Z0-9_]*)"\s*=>', inner))
    keys = set(literal_keys)
    for name in re.findall(r"\blocal\.(\w+)", inner):
        keys |= map_keys(tf_locals()[name])
    return keys


def one(body: dict[str, Any], key: str) -> dict[str, Any]:
    """The single nested block `key` of a block body."""
    value = body[key]
    assert isinstance(value, list) and len(value) == 1, f"expected one {key} block"
    block: dict[str, Any] = value[0]
    return block


def dynamic_keys(body: dict[str, Any], name: str, key_attr: str) -> set[str]:
    keys: set[str] = set()
    for entry in body.get("dynamic", []):
        for label, dyn in entry.items():
            if label == name:
                content = one(dyn, "content")
                assert content[key_attr] == f"${{{name}.key}}", content
                keys |= map_keys(dyn["for_each"])
    return keys


def strip_interpolation(expr: str) -> str:
    return expr.removeprefix("${").removesuffix("}")


# --- Settings ----------------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    prefix = str(Settings.model_config.get("env_prefix") or "")
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias.upper() if isinstance(alias, str) else (prefix + name).upper())
    return names


FUNCTIONS = ("api", "on_upload_finalized")
_EACH = re.compile(r"\$\{each\.(key|value\.(\w+))\}")


def function(name: str) -> dict[str, Any]:
    """One function of the `for_each` resource, as Terraform would expand it: `each.key` and
    `each.value.*` replaced from `local.functions`, and its dynamic `event_trigger` resolved."""
    values = tf_locals()["functions"][name]
    body = resource("google_cloudfunctions2_function.fn")

    def expand(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v) for v in value]
        if not isinstance(value, str):
            return value
        whole = _EACH.fullmatch(value)
        if whole:  # keeps non-string values (numbers, booleans) as they are
            return name if whole[1] == "key" else values[whole[2]]
        return _EACH.sub(lambda m: name if m[1] == "key" else str(values[m[2]]), value)

    expanded: dict[str, Any] = expand(body)
    for entry in expanded.pop("dynamic", []):
        for label, dyn in entry.items():
            trigger_on = {"${each.value.event_trigger ? [each.key] : []}": values["event_trigger"]}
            assert label == "event_trigger" and dyn["for_each"] in trigger_on, dyn["for_each"]
            if trigger_on[dyn["for_each"]]:
                expanded["event_trigger"] = dyn["content"]
    return expanded


def function_env(name: str) -> set[str]:
    service = one(function(name), "service_config")
    plain = map_keys(service["environment_variables"])
    secret = dynamic_keys(service, "secret_environment_variables", "key")
    return plain | secret


WORKER = "google_cloud_run_v2_worker_pool.worker"


def worker_template() -> dict[str, Any]:
    return one(resource(WORKER), "template")


def worker_env() -> set[str]:
    container = one(worker_template(), "containers")
    static = {env["name"] for env in container.get("env", [])}
    return static | dynamic_keys(container, "env", "name")


# --- terraform ---------------------------------------------------------------------------------


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform binary not installed")
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(TF)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"run terraform fmt -recursive infra/terraform:\n{result.stdout}"


def test_layout_one_file_per_family() -> None:
    for name in ("versions.tf", "variables.tf", "outputs.tf", "network.tf", "redis.tf",
                 "storage.tf", "functions.tf", "worker.tf", "secrets.tf", "iam.tf",
                 "terraform.tfvars.example"):
        assert (TF / name).is_file(), name
    versions = (TF / "versions.tf").read_text()
    # Direct VPC egress on gen2 functions needs google >= 7.21.
    assert re.search(r'version\s*=\s*">=\s*7\.21', versions)


def test_every_variable_declared_and_used() -> None:
    declared = set(blocks("variable"))
    text = json.dumps({k: v for k, v in tf_files().items()})
    used = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used - declared == set(), "used but not declared"
    assert declared - used == set(), "declared but never used"


def test_variables_documented_and_validated() -> None:
    free_form = {"labels", "deletion_protection", "bigquery_source_project"}
    for name, body in blocks("variable").items():
        assert body.get("description"), f"variable {name} needs a description"
        assert "type" in body, f"variable {name} needs a type"
        if name not in free_form:
            assert body.get("validation"), f"variable {name} needs a validation block"
        # Nothing secret as a variable (secrets live in Secret Manager).
        assert not re.search(r"(password|secret|api_keys?|token|auth)$", name), name


def test_tfvars_example_sets_required_and_only_declared() -> None:
    example = _clean(hcl2.loads((TF / "terraform.tfvars.example").read_text()))
    declared = blocks("variable")
    assert set(example) <= set(declared)
    required = {name for name, body in declared.items() if "default" not in body}
    assert required <= set(example), f"set these in terraform.tfvars.example: {required}"


def test_every_setting_is_wired_on_functions_and_worker() -> None:
    fields = settings_env_names()
    wiring = {
        "google_cloudfunctions2_function.fn[api]": function_env("api"),
        "google_cloudfunctions2_function.fn[on_upload_finalized]": function_env(
            "on_upload_finalized"),
        WORKER: worker_env(),
    }
    for target, env in wiring.items():
        exempt = set(NOT_ON_GCP) | (set(NOT_ON_WORKER) if target == WORKER
                                    else set(NOT_ON_FUNCTIONS))
        missing = fields - env - exempt
        assert not missing, (f"{target} does not set {sorted(missing)}: add them to "
                             "local.app_env_defaults (or secret_env) in infra/terraform/env.tf")
        unknown = env - fields - EXPECTED_FROM_ISSUES
        assert not unknown, f"{target} sets {sorted(unknown)}, which Settings does not read"
        assert not (env & set(NOT_ON_GCP)), "an exempt setting is wired after all: drop it"
    # The allow-lists may only name real settings.
    assert set(NOT_ON_GCP) | set(NOT_ON_WORKER) | set(NOT_ON_FUNCTIONS) <= fields


def test_secrets_come_from_secret_manager() -> None:
    secret_env = tf_locals()["secret_env"]
    for name in ("REDIS_PASSWORD", "OPENAI_API_KEY", "API_KEYS", "API_KEYS_JSON",
                 "UPLOAD_SIGNING_SECRET"):
        assert re.search(rf'"?{name}"?\s*(=|=>)\s*(google_secret_manager_secret\.|s\.secret_id)',
                         secret_env), name
        assert name not in map_keys(tf_locals()["app_env"]), f"{name} must not be plain env"
    # REDIS_PASSWORD comes from the AUTH secret, which exists with the HA instance only.
    assert 'for s in google_secret_manager_secret.redis_auth : "REDIS_PASSWORD"' in secret_env
    # The CA for TLS to Memorystore reaches both roles as a mounted secret file.
    ca_path = tf_locals()["app_env_defaults"]["REDIS_CA_FILE"]
    assert ca_path == "${local.redis_ca_dir}/ca.pem"
    for fn in FUNCTIONS:
        volume = one(one(function(fn), "service_config"), "secret_volumes")
        assert volume["mount_path"] == "${local.redis_ca_dir}"
        assert "redis_ca" in volume["secret"] and one(volume, "versions")["path"] == "ca.pem"
    template = worker_template()
    mount = one(one(template, "containers"), "volume_mounts")
    assert mount["mount_path"] == "${local.redis_ca_dir}"
    assert "redis_ca" in one(one(template, "volumes"), "secret")["secret"]
    # No output leaks a secret.
    outputs = json.dumps(blocks("output"))
    assert "auth_string" not in outputs and "secret_data" not in outputs


def test_redis_noeviction_auth_tls() -> None:
    redis = resource("google_redis_instance.queue")
    assert redis["redis_configs"]["maxmemory-policy"] == "noeviction"
    assert redis["auth_enabled"] is True
    assert redis["transit_encryption_mode"] == "SERVER_AUTHENTICATION"
    variables = blocks("variable")
    assert variables["redis_tier"]["default"] == "STANDARD_HA"
    assert variables["redis_version"]["default"].startswith("REDIS_7_")
    env = tf_locals()["app_env_defaults"]
    assert env["REDIS_TLS"] == "true"
    assert env["REDIS_PORT"] == "${tostring(local.redis_port)}"
    assert "google_redis_instance.queue[0].port" in tf_locals()["redis_port"]


def test_redis_mode_switches_between_instance_and_cluster() -> None:
    """redis_mode = "ha" creates the instance, "cluster" Memorystore for Redis Cluster with its
    Private Service Connect policy; exactly one exists, and both roles' env follows it."""
    variables = blocks("variable")
    assert variables["redis_mode"]["default"] == "ha"
    assert 'contains(["ha", "cluster"], var.redis_mode)' in one(
        variables["redis_mode"], "validation")["condition"]
    assert tf_locals()["redis_cluster"] == '${var.redis_mode == "cluster"}'
    only_ha, only_cluster = "${local.redis_cluster ? 0 : 1}", "${local.redis_cluster ? 1 : 0}"
    for address in ("google_redis_instance.queue", "google_secret_manager_secret.redis_auth",
                    "google_secret_manager_secret_version.redis_auth"):
        assert resource(address)["count"] == only_ha, address
    for address in ("google_redis_cluster.queue", "google_network_connectivity_service_"
                    "connection_policy.redis", "google_compute_subnetwork.redis_psc"):
        assert resource(address)["count"] == only_cluster, address
    # Existing HA deployments keep their instance and secret (count added: state moved).
    moves = {m["from"]: m["to"] for doc in tf_files().values() for m in doc.get("moved", [])}
    for address in ("google_redis_instance.queue", "google_secret_manager_secret.redis_auth",
                    "google_secret_manager_secret_version.redis_auth"):
        assert moves.get(f"${{{address}}}") == f"${{{address}[0]}}", address

    cluster = resource("google_redis_cluster.queue")
    assert cluster["redis_configs"]["maxmemory-policy"] == "noeviction"
    assert cluster["transit_encryption_mode"] == "TRANSIT_ENCRYPTION_MODE_SERVER_AUTHENTICATION"
    assert cluster["authorization_mode"] in {"AUTH_MODE_DISABLED", "AUTH_MODE_IAM_AUTH"}
    assert one(cluster, "psc_configs")["network"] == "${google_compute_network.vpc.id}"
    assert one(cluster, "zone_distribution_config")["mode"] == "MULTI_ZONE"
    assert cluster["replica_count"] == "${var.redis_cluster_replicas}"
    assert variables["redis_cluster_replicas"]["default"] >= 1
    assert "${google_network_connectivity_service_connection_policy.redis}" in cluster[
        "depends_on"]
    policy = resource("google_network_connectivity_service_connection_policy.redis")
    assert policy["service_class"] == "gcp-memorystore-redis"
    assert policy["network"] == "${google_compute_network.vpc.id}"
    assert one(policy, "psc_config")["subnetworks"] == [
        "${google_compute_subnetwork.redis_psc[0].id}"]
    assert "networkconnectivity.googleapis.com" in tf_locals()["services"]

    # Env: the cluster flag, and host/port/CA of whichever exists (the discovery endpoint).
    env = tf_locals()["app_env_defaults"]
    assert env["REDIS_CLUSTER"] == "${tostring(local.redis_cluster)}"
    assert env["REDIS_HOST"] == "${local.redis_host}"
    assert env["QUEUE_PREFIX"] == "${var.queue_prefix}"
    host, port = tf_locals()["redis_host"], tf_locals()["redis_port"]
    assert host.startswith("${local.redis_cluster ? google_redis_cluster.queue[0]")
    assert "discovery_endpoints[0].address" in host and "instance.queue[0].host" in host
    assert "discovery_endpoints[0].port" in port and "instance.queue[0].port" in port
    ca = tf_locals()["redis_ca_pem"]
    assert "managed_server_ca" in ca and "server_ca_certs" in ca
    assert resource("google_secret_manager_secret_version.redis_ca")["secret_data"] == (
        "${local.redis_ca_pem}")
    # Both roles read the Redis secrets of either mode.
    for role in ("functions_redis", "worker_redis"):
        assert resource(f"google_secret_manager_secret_iam_member.{role}")["for_each"] == (
            "${local.redis_secret_ids}")


def test_cluster_mode_requires_a_hash_tagged_prefix() -> None:
    """terraform refuses a cluster with a prefix the worker would refuse (Settings.HASH_TAG):
    the validation's own regex, run on the same prefixes."""
    from heavylift.settings import HASH_TAG

    rules = blocks("variable")["queue_prefix"]["validation"]
    (cluster_rule,) = [r for r in rules if "redis_mode" in r["condition"]]
    condition = cluster_rule["condition"]
    assert condition.startswith('${var.redis_mode != "cluster" || can(regex(')
    pattern = re.search(r'regex\("(.+?)", var\.queue_prefix\)', condition)
    assert pattern is not None
    for prefix in ("{heavylift}", "hl{q}", "bull", "{}bull", "bull}{", "a{b}c"):
        assert bool(re.match(pattern[1], prefix)) == bool(HASH_TAG.match(prefix)), prefix
    assert "{hash tag}" in cluster_rule["error_message"]


def test_buckets_block_public_access() -> None:
    for address, body in blocks("resource").items():
        if address.startswith("google_storage_bucket."):
            assert body["uniform_bucket_level_access"] is True, address
            assert body["public_access_prevention"] == "enforced", address
    data = resource("google_storage_bucket.data")
    cors = one(data, "cors")
    assert "PUT" in cors["method"] and cors["origin"] == "${var.cors_allowed_origins}"
    prefixes = [one(rule, "condition").get("matches_prefix") for rule in data["lifecycle_rule"]]
    assert ["uploads/"] in prefixes, "a lifecycle rule must expire stale uploads/"
    for address, body in blocks("resource").items():
        if "iam_member" in address and "bucket" in address:
            assert body["member"] not in ("allUsers", "allAuthenticatedUsers"), address


def test_no_primitive_roles() -> None:
    text = json.dumps(tf_files())
    assert not re.search(r"roles/(owner|editor|viewer)\b", text)


def test_one_service_account_per_role() -> None:
    accounts = {a for a in blocks("resource") if a.startswith("google_service_account.")}
    assert accounts >= {f"google_service_account.{r}"
                        for r in ("functions", "worker", "eventarc", "build")}
    api = one(function("api"), "service_config")
    worker = worker_template()
    assert "functions" in api["service_account_email"]
    assert "worker" in worker["service_account"]


def test_event_trigger_filters_finalize_on_our_bucket() -> None:
    assert "event_trigger" not in function("api")
    trigger = one(function("on_upload_finalized"), "event_trigger")
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    filters = {f["attribute"]: f["value"] for f in trigger["event_filters"]}
    assert filters == {"bucket": "${google_storage_bucket.data.name}"}
    assert "eventarc" in trigger["service_account_email"]
    for fn in FUNCTIONS:  # entry points as named in functions/main.py
        assert one(function(fn), "build_config")["entry_point"] == fn
    service = one(function("on_upload_finalized"), "service_config")
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert one(function("api"), "service_config")["ingress_settings"] == "${var.api_ingress}"


def test_function_state_moved_to_for_each() -> None:
    # The functions were `google_cloudfunctions2_function.<name>` before the for_each: without a
    # `moved` block an existing deployment would destroy and recreate them (new api URL).
    moves = {m["from"]: m["to"] for doc in tf_files().values() for m in doc.get("moved", [])}
    for fn in FUNCTIONS:
        assert moves.get(f"${{google_cloudfunctions2_function.{fn}}}") == (
            f'${{google_cloudfunctions2_function.fn["{fn}"]}}'), moves


def test_functions_reach_redis_privately() -> None:
    for fn in FUNCTIONS:
        service = one(function(fn), "service_config")
        assert one(service, "direct_vpc_network_interface")["subnetwork"]
        assert service["direct_vpc_egress"] == "VPC_EGRESS_PRIVATE_RANGES_ONLY"
        assert service["max_instance_count"]
    assert one(one(worker_template(), "vpc_access"), "network_interfaces")["subnetwork"]


def test_worker_pool_probes_and_grace() -> None:
    # A worker pool: pull-based, no endpoint. The old service is gone, and nobody is granted
    # anything on the pool but the autoscaler.
    assert "google_cloud_run_v2_service.worker" not in blocks("resource")
    container = one(worker_template(), "containers")
    assert container["name"] == "worker"
    # PORT is not set on the pool: probes and the metrics sidecar rely on the code's default.
    port = Settings.model_fields["port"].default
    assert tf_locals()["worker_port"] == port == 8080
    for probe in ("startup_probe", "liveness_probe"):
        http = one(one(container, probe), "http_get")
        assert http["path"] == "/healthz" and http["port"] == "${local.worker_port}"
    variables = blocks("variable")
    assert variables["worker_min_instances"]["default"] >= 1
    assert ">= 1" in one(variables["worker_min_instances"], "validation")["condition"]
    assert "var.worker_min_instances" in one(variables["worker_max_instances"],
                                             "validation")["condition"]
    # Cloud Run SIGKILLs 10 s after SIGTERM: the worker's drain time must end before that.
    grace = variables["worker_shutdown_grace_s"]
    assert grace["default"] < 10
    assert "< 10" in one(grace, "validation")["condition"]
    assert grace["default"] == Settings.model_fields["shutdown_grace_s"].default
    assert tf_locals()["app_env_defaults"]["SHUTDOWN_GRACE_S"] == (
        "${tostring(var.worker_shutdown_grace_s)}")


# --- autoscaling -------------------------------------------------------------------------------

BACKLOG = "${local.backlog_scaling ? 1 : 0}"
AUTOSCALING_RESOURCES = {
    "google_service_account.autoscaler", "google_parameter_manager_parameter.autoscaler",
    "google_parameter_manager_parameter_version.autoscaler",
    "google_cloud_run_v2_service.autoscaler",
    "google_cloud_run_v2_worker_pool_iam_member.autoscaler",
    "google_service_account_iam_member.autoscaler_acts_as_worker",
    "google_project_iam_member.worker_metric_writer",
}


def dynamic_block(body: dict[str, Any], name: str) -> dict[str, Any]:
    found = [dyn for entry in body.get("dynamic", []) for label, dyn in entry.items()
             if label == name]
    assert len(found) == 1, f"expected one dynamic {name} block"
    block: dict[str, Any] = found[0]
    return block


def test_autoscaling_switch_has_two_modes() -> None:
    mode = blocks("variable")["worker_autoscaling"]
    assert mode["default"] == "backlog"
    assert one(mode, "validation")["condition"] == (
        '${contains(["backlog", "fixed"], var.worker_autoscaling)}')
    assert tf_locals()["backlog_scaling"] == '${var.worker_autoscaling == "backlog"}'
    # Everything the autoscaler needs exists in "backlog" mode only.
    for address in AUTOSCALING_RESOURCES:
        assert resource(address)["count"] == BACKLOG, address
    grants = resource("google_project_iam_member.autoscaler")["for_each"]
    assert grants.startswith("${local.backlog_scaling ? toset(") and grants.endswith(
        ": toset([])}")


def test_fixed_mode_pins_the_count_and_backlog_mode_leaves_it_to_the_autoscaler() -> None:
    pool = resource(WORKER)
    assert "scaling" not in pool, "scaling must be dynamic: present in fixed mode only"
    scaling = dynamic_block(pool, "scaling")
    # backlog -> no block (Terraform keeps the count the autoscaler set); fixed -> min instances.
    assert scaling["for_each"] == "${local.backlog_scaling ? [] : [var.worker_min_instances]}"
    content = one(scaling, "content")
    assert content == {"scaling_mode": "MANUAL", "manual_instance_count": "${scaling.value}"}
    # The metrics sidecar runs beside the worker in backlog mode only, after the worker is up.
    sidecar = dynamic_block(worker_template(), "containers")
    assert sidecar["for_each"] == "${local.backlog_scaling ? [var.metrics_sidecar_image] : []}"
    content = one(sidecar, "content")
    assert content["image"] == "${containers.value}" and content["depends_on"] == ["worker"]
    assert "cloud-run-gmp-sidecar" in blocks("variable")["metrics_sidecar_image"]["default"]


def test_autoscaler_scales_the_pool_on_unfinished_jobs() -> None:
    from heavylift.runtime.metrics import _BACKLOG_STATES

    config = tf_locals()["autoscaler_config"]
    assert config["apiVersion"] == "crema/v1" and config["kind"] == "CremaConfig"
    spec = config["spec"]
    assert spec["pollingInterval"] == 30  # CREMA loops itself: no scheduler needed
    scaled = one(spec, "scaledObjects")["spec"]
    assert scaled["scaleTargetRef"]["name"] == (
        "projects/${var.project_id}/locations/${var.region}/workerpools/"
        "${google_cloud_run_v2_worker_pool.worker.name}")
    assert scaled["minReplicaCount"] == "${var.worker_min_instances}"
    assert scaled["maxReplicaCount"] == "${var.worker_max_instances}"
    trigger = one(scaled, "triggers")
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert meta["serverAddress"] == (
        "https://monitoring.googleapis.com/v1/projects/${var.project_id}/location/global/prometheus")
    assert meta["threshold"] == "${tostring(var.worker_backlog_per_instance)}"
    # The states the worker's heavylift_queue_backlog sums, plus the running jobs; one value per
    # queue and state across instances (each reports the same Redis counts).
    assert set(tf_locals()["outstanding_states"]) == {*_BACKLOG_STATES, "active"}
    query = tf_locals()["outstanding_query"]
    assert query.startswith("sum(max by (queue, state) (heavylift_queue_depth{state=~'")
    assert "${join(\"|\", local.outstanding_states)}" in query
    auth = one(spec, "triggerAuthentications")
    assert auth["spec"] == {"podIdentity": {"provider": "gcp"}}
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    scale_down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 60
    # The parameter version holds exactly this config; its id changes with the content.
    version = resource("google_parameter_manager_parameter_version.autoscaler")
    assert version["parameter_data"] == "${local.autoscaler_yaml}"
    assert "sha256(local.autoscaler_yaml)" in version["parameter_version_id"]
    assert tf_locals()["autoscaler_yaml"] == "${yamlencode(local.autoscaler_config)}"
    assert resource("google_parameter_manager_parameter.autoscaler")["format"] == "YAML"


def test_autoscaler_service_runs_one_looping_instance_nobody_calls() -> None:
    service = resource("google_cloud_run_v2_service.autoscaler")
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    template = one(service, "template")
    assert "autoscaler" in template["service_account"]
    scaling = one(template, "scaling")
    assert scaling["min_instance_count"] == scaling["max_instance_count"] == 1
    container = one(template, "containers")
    assert container["image"] == "${var.autoscaler_image}"
    assert one(container, "resources")["cpu_idle"] is False
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CREMA_CONFIG"] == "${google_parameter_manager_parameter_version.autoscaler[0].name}"
    assert "crema" in blocks("variable")["autoscaler_image"]["default"]
    invokers = [a for a, b in blocks("resource").items()
                if "iam" in a and b.get("role") == "roles/run.invoker"]
    assert all("autoscaler" not in json.dumps(resource(a)) for a in invokers), invokers
    services = set(re.findall(r'"([a-z]+\.googleapis\.com)"', tf_locals()["services"]))
    assert {"monitoring.googleapis.com", "parametermanager.googleapis.com"} <= services


def test_autoscaler_least_privilege() -> None:
    autoscaler = "${local.autoscaler_sa}"
    granted = {a: b for a, b in blocks("resource").items()
               if "iam_member" in a and b.get("member") == autoscaler}
    assert set(granted) == {
        "google_project_iam_member.autoscaler",
        "google_cloud_run_v2_worker_pool_iam_member.autoscaler",
        "google_service_account_iam_member.autoscaler_acts_as_worker",
    }
    project_roles = set(re.findall(r'"(roles/[^"]+)"', granted[
        "google_project_iam_member.autoscaler"]["for_each"]))
    assert project_roles == {"roles/parametermanager.parameterViewer", "roles/monitoring.viewer"}
    pool = granted["google_cloud_run_v2_worker_pool_iam_member.autoscaler"]
    assert pool["role"] == "roles/run.developer"
    assert pool["name"] == "${google_cloud_run_v2_worker_pool.worker.name}"
    acts_as = granted["google_service_account_iam_member.autoscaler_acts_as_worker"]
    assert acts_as["role"] == "roles/iam.serviceAccountUser"
    assert acts_as["service_account_id"] == "${google_service_account.worker.name}"
    # The worker's sidecar writes metrics; nothing else gained a role for autoscaling.
    writer = resource("google_project_iam_member.worker_metric_writer")
    assert writer["role"] == "roles/monitoring.metricWriter"
    assert writer["member"] == "${google_service_account.worker.member}"


# --- checkov -----------------------------------------------------------------------------------


def test_checkov_skips_have_reasons() -> None:
    for path in TF.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"#checkov:skip=CKV2?_[A-Z]+_\d+:\S.{10,}", line), line


@pytest.mark.timeout(1200)  # the first run creates .venv-checkov and installs checkov
def test_checkov_passes() -> None:
    result = subprocess.run(["bash", str(ROOT / "infra" / "checkov.sh"), "-o", "json"],
                            capture_output=True, text=True, timeout=1150)
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [(c["check_id"], c["resource"]) for r in reports
              for c in r.get("results", {}).get("failed_checks", [])]
    assert not failed, f"checkov failures: {failed}"
    assert sum(r["summary"]["passed"] for r in reports) > 0


# --- Dockerfile and docker-compose -------------------------------------------------------------


def console_scripts() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(pyproject["project"].get("scripts", {}))


def test_dockerfile_slim_nonroot_healthcheck_worker_only() -> None:
    text = (ROOT / "worker_service" / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim$", text, re.M)
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    # Only the worker extra: the default EXTRAS is worker and nothing else is installed.
    assert re.search(r"^ARG EXTRAS=worker$", text, re.M)
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs == ['pip install "$@" ".[${EXTRAS}]"'], installs
    cmd = re.findall(r"^CMD \[\"([^\"]+)\"", text, re.M)
    assert cmd[-1] in console_scripts()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "**" and "!tests/" not in ignore


def test_compose_parses_and_commands_exist() -> None:
    compose = yaml.safe_load((ROOT / "local" / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    assert {"redis", "gcs", "bigquery", "api", "events", "worker"} <= set(services)
    # Third-party images: pinned tags, and the program each runs (their own entrypoints).
    third_party = {"redis": "redis-server", "fsouza/fake-gcs-server": "-scheme",
                   "curlimages/curl": "-sS", "python": "pip install"}
    for name, service in services.items():
        command = service.get("command")
        assert command, f"service {name} has no command"
        if "build" in service:
            check_project_command(name, command)
        else:
            image, _, tag = service["image"].partition(":")
            assert tag and tag != "latest", f"{name}: pin the image tag"
            assert command[0].startswith(third_party[image]), name
        if name != "gcs-init":
            assert "healthcheck" in service or "build" in service, f"{name} needs a healthcheck"
    assert "noeviction" in services["redis"]["command"]
    assert "bqemulator start" in services["bigquery"]["command"][0]
    # The same variable names as Terraform.
    fields = settings_env_names()
    tf_names = map_keys(tf_locals()["app_env"])
    for name in ("api", "events", "worker"):
        env = services[name]["environment"]
        known = fields | EXPECTED_FROM_ISSUES | {"STORAGE_EMULATOR_HOST"}
        assert set(env) <= known, f"{name}: unknown variables {set(env) - known}"
        assert {"REDIS_HOST", "STORAGE_URL"} <= set(env) & tf_names


def check_project_command(service: str, command: list[str]) -> None:
    program = command[0]
    if program == "functions-framework":
        args = dict(zip(command[1::2], command[2::2], strict=False))
        source = ROOT / args["--source"].removeprefix("/app/")
        assert source.is_file(), f"{service}: {source} does not exist"
        tree = ast.parse(source.read_text())
        defined = {n.name for n in tree.body
                   if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign)
                    for t in n.targets if isinstance(t, ast.Name)}
        assert args["--target"] in defined, f"{service}: no {args['--target']} in {source}"
    elif program in ("python", "python3") and command[1] == "-m":
        module = command[2].replace(".", "/")
        assert any((ROOT / base / f"{module}{suffix}").exists() for base in (".", "src")
                   for suffix in ("", ".py")), f"{service}: module {command[2]} not found"
    else:
        assert program in console_scripts(), f"{service}: {program} is no console script"


# --- packaging ---------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_package_builds_function_zip_and_worker_context(tmp_path: Path) -> None:
    # A copy of the project plus the clutter a work tree has, which must not be shipped.
    root = tmp_path / "project"
    root.mkdir()
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for tree in ("src/heavylift", "worker_service", "functions"):
        shutil.copytree(ROOT / tree, root / tree, ignore=ignore)
    if not (root / "functions" / "main.py").exists():  # until the functions land
        (root / "functions" / "main.py").write_text("def api(request): ...\n")
    for clutter in ("tests/test_x.py", ".venv/lib/x.py", "src/heavylift/__pycache__/x.pyc",
                    "functions/tests/test_y.py"):
        (root / clutter).parent.mkdir(parents=True, exist_ok=True)
        (root / clutter).write_text("")
    out = tmp_path / "build"
    result = subprocess.run([sys.executable, str(ROOT / "infra" / "package.py"), "--root",
                             str(root), "--out", str(out)],
                            capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(out / "function-source.zip") as archive:
        names = archive.namelist()
        requirements = archive.read("requirements.txt").decode().split()
    assert "main.py" in names
    assert "heavylift/__init__.py" in names and "heavylift/settings.py" in names
    assert not [n for n in names if n.startswith(("tests/", ".venv")) or "__pycache__" in n
                or n.endswith(".pyc")], names
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", r) for r in requirements)
    pinned = {r.split("==")[0].lower() for r in requirements}
    assert {"functions-framework", "bullmq", "pydantic-settings"} <= pinned
    assert "heavylift" not in pinned
    context = out / "worker-image"
    for name in ("Dockerfile", "pyproject.toml", "constraints.txt",
                 "src/heavylift/settings.py", "worker_service/__main__.py"):
        assert (context / name).is_file(), name
    assert not (context / "tests").exists() and not (context / "functions").exists()
    assert not list(context.rglob("__pycache__"))
