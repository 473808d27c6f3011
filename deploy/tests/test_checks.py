"""Every check passes on the repository's files and fails on a copy with one mistake put in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import find
from validation import compose, consistency, dockerfile, envcheck, k8s, netpol, rust_env


def container(docs: list[dict], kind: str, name: str) -> dict:
    return k8s.pod_spec(find(docs, kind, name))["containers"][0]


# ---- the repository's files pass --------------------------------------------------------------

def test_the_repository_passes_every_check(root: Path, docs: list[dict], compose_doc: dict) -> None:
    assert k8s.check_schemas(docs, ["1.30.0"]) == []
    assert k8s.check_workloads(docs) == []
    assert k8s.check_exposure(docs) == []
    assert k8s.check_skips(docs)[0] == []
    assert consistency.check_references(docs) == []
    assert consistency.check_k8s_wiring(docs) == []
    assert netpol.check_network_policies(docs)[0] == []
    assert compose.check_schema(compose_doc, root / "deploy/schemas/compose-spec.json") == []
    assert compose.check_semantics(compose_doc) == []
    assert consistency.check_compose_wiring(compose_doc) == []
    assert dockerfile.check(root) == []


# ---- Kubernetes --------------------------------------------------------------------------------

def test_an_unknown_field_fails_the_strict_schema(docs: list[dict]) -> None:
    container(docs, "Deployment", "gateway")["imagePullPolicey"] = "IfNotPresent"
    problems = k8s.check_schemas([find(docs, "Deployment", "gateway")], ["1.30.0"])
    assert problems and "imagePullPolicey" in problems[0]


def test_a_wrong_type_fails_the_schema(docs: list[dict]) -> None:
    container(docs, "Deployment", "auth")["ports"][0]["containerPort"] = "50051"
    assert k8s.check_schemas([find(docs, "Deployment", "auth")], ["1.35.0"])


@pytest.mark.parametrize("mutation, expected", [
    (lambda c: c["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
    (lambda c: c["securityContext"].__setitem__("allowPrivilegeEscalation", True), "allowPrivilegeEscalation"),
    (lambda c: c["securityContext"]["capabilities"].__setitem__("drop", ["NET_RAW"]), "drop ALL"),
    (lambda c: c["resources"]["limits"].pop("memory"), "limits.memory"),
    (lambda c: c.pop("livenessProbe"), "livenessProbe"),
    (lambda c: c["readinessProbe"]["httpGet"].__setitem__("path", "/healthz"), "readinessProbe must GET /readyz"),
    (lambda c: c.__setitem__("image", "mp3converter/converter:1.0"), "image must be"),
])
def test_workload_policy_violations_are_caught(docs: list[dict], mutation, expected: str) -> None:
    mutation(container(docs, "Deployment", "converter"))
    assert any(expected in p for p in k8s.check_workloads(docs)), k8s.check_workloads(docs)


def test_a_pod_that_may_run_as_root_is_caught(docs: list[dict]) -> None:
    spec = k8s.pod_spec(find(docs, "StatefulSet", "mysql"))
    spec["securityContext"].pop("runAsNonRoot")
    assert any("runAsNonRoot" in p for p in k8s.check_workloads(docs))


def test_the_scrape_port_must_be_the_service_port(docs: list[dict]) -> None:
    find(docs, "Deployment", "auth")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "50051"
    assert any("prometheus.io/port" in p for p in k8s.check_workloads(docs))


def test_gateway_probes_on_the_public_port_are_caught(docs: list[dict]) -> None:
    c = container(docs, "Deployment", "gateway")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        c[probe]["httpGet"]["port"] = "http"
    find(docs, "Deployment", "gateway")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "8080"
    assert any("internal admin port" in p for p in k8s.check_workloads(docs)), k8s.check_workloads(docs)


def test_a_nodeport_service_is_exposure(docs: list[dict]) -> None:
    find(docs, "Service", "mysql")["spec"]["type"] = "NodePort"
    assert any("NodePort" in p for p in k8s.check_exposure(docs))


def test_an_ingress_to_an_internal_service_is_exposure(docs: list[dict]) -> None:
    ingress = find(docs, "Ingress", "dashboards")
    ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "auth"
    assert any("routes rabbitmq-manager.com to auth" in p for p in k8s.check_exposure(docs))


def test_buffered_uploads_are_caught(docs: list[dict]) -> None:
    find(docs, "Ingress", "gateway")["metadata"]["annotations"].pop("nginx.ingress.kubernetes.io/proxy-request-buffering")
    assert any("proxy-request-buffering" in p for p in k8s.check_exposure(docs))


def test_a_skip_without_reason_is_caught(docs: list[dict]) -> None:
    find(docs, "Deployment", "gateway")["metadata"]["annotations"]["checkov.io/skip9"] = "CKV_K8S_22"
    problems, _ = k8s.check_skips(docs)
    assert any("CKV_K8S_22 has no reason" in p for p in problems)


def test_an_unlisted_manifest_is_caught(tmp_path: Path, root: Path) -> None:
    shutil.copytree(root / "k8s", tmp_path / "k8s")
    (tmp_path / "k8s" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: mp3converter}\n", encoding="utf-8")
    problems, rendered = k8s.check_kustomization(tmp_path / "k8s")
    assert any("extra.yaml is not listed" in p for p in problems)
    assert len(rendered) > 40, "kustomize rendered the listed resources"


def test_kustomize_renders_the_files_unchanged(root: Path, docs: list[dict]) -> None:
    problems, rendered = k8s.check_kustomization(root / "k8s")
    assert problems == []
    assert {k8s.key(d) for d in rendered} == {k8s.key(d) for d in docs}


# ---- references and wiring ---------------------------------------------------------------------

def test_a_missing_secret_key_is_caught(docs: list[dict]) -> None:
    secret = find(docs, "Secret", "notification-secrets")
    secret["stringData"].pop("SMTP_URL")
    assert any("missing key SMTP_URL" in p for p in consistency.check_references(docs))


def test_a_service_selecting_nothing_is_caught(docs: list[dict]) -> None:
    find(docs, "Service", "gateway")["spec"]["selector"] = {"app.kubernetes.io/name": "gatewey"}
    assert any("selects no workload" in p for p in consistency.check_references(docs))


def test_a_password_differing_from_the_server_is_caught(docs: list[dict]) -> None:
    secret = find(docs, "Secret", "converter-secrets")
    secret["stringData"]["AMQP_URL"] = secret["stringData"]["AMQP_URL"].replace("example-rabbitmq", "other")
    assert any("converter: AMQP_URL" in p for p in consistency.check_k8s_wiring(docs))


def test_a_url_to_a_wrong_host_is_caught(docs: list[dict]) -> None:
    find(docs, "ConfigMap", "gateway-config")["data"]["AUTH_GRPC_URL"] = "http://localhost:50051"
    assert any("not the Service 'auth'" in p for p in consistency.check_k8s_wiring(docs))


def test_a_listener_port_differing_from_the_container_port_is_caught(docs: list[dict]) -> None:
    find(docs, "ConfigMap", "notification-config")["data"]["HTTP_ADDR"] = "0.0.0.0:9000"
    assert any("notification: HTTP_ADDR" in p for p in consistency.check_k8s_wiring(docs))


def test_unmarked_example_credentials_are_caught(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("stringData:\n  PASSWORD: example-db-password\n", encoding="utf-8")
    assert consistency.check_example_markers([path])
    path.write_text(f"stringData:\n  # {consistency.MARKER}\n  PASSWORD: example-db-password\n", encoding="utf-8")
    assert consistency.check_example_markers([path]) == []


# ---- network policies --------------------------------------------------------------------------

def without(docs: list[dict], kind: str, name: str) -> list[dict]:
    return [d for d in docs if not (d["kind"] == kind and d["metadata"]["name"] == name)]


def test_a_missing_default_deny_is_caught(docs: list[dict]) -> None:
    problems, _ = netpol.check_network_policies(without(docs, "NetworkPolicy", "default-deny"))
    assert any("no default-deny" in p for p in problems)


def test_a_workload_without_its_own_policy_is_caught_and_stays_closed(docs: list[dict]) -> None:
    debug = yaml.safe_load(yaml.safe_dump(find(docs, "Deployment", "notification")))
    debug["metadata"]["name"] = "debug"
    debug["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "debug"
    problems, _ = netpol.check_network_policies(docs + [debug])
    assert problems == ["workload debug has no NetworkPolicy of its own (Ingress and Egress)"]
    # Without the default deny, such a workload is open to anyone, the other namespaces included.
    problems, _ = netpol.check_network_policies(without(docs, "NetworkPolicy", "default-deny") + [debug])
    assert any("a pod of another namespace reaches [('a pod of another namespace', 'debug', 8083)]" in p
               for p in problems)
    assert not any("debug → mysql" in p for p in problems), "mysql's own policy still admits auth only"


def test_a_datastore_open_to_a_non_owner_is_caught(docs: list[dict]) -> None:
    policy = find(docs, "NetworkPolicy", "mysql")
    policy["spec"]["ingress"][0]["from"][0]["podSelector"] = {}
    converter = find(docs, "NetworkPolicy", "converter")
    converter["spec"]["egress"].append({"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mysql"}}}]})
    problems, _ = netpol.check_network_policies(docs)
    assert any("converter → mysql:3306" in p for p in problems)


def test_a_blocked_intended_path_is_caught(docs: list[dict]) -> None:
    problems, _ = netpol.check_network_policies(without(docs, "NetworkPolicy", "auth"))
    assert any("workload auth has no NetworkPolicy" in p for p in problems)
    assert any("intended but blocked: gateway → auth:50051" in p for p in problems)


def test_without_dns_egress_names_do_not_resolve(docs: list[dict]) -> None:
    problems, _ = netpol.check_network_policies(without(docs, "NetworkPolicy", "allow-dns"))
    assert any("cannot resolve names" in p for p in problems)


def test_internet_egress_is_caught(docs: list[dict]) -> None:
    find(docs, "NetworkPolicy", "gateway")["spec"]["egress"].append({"to": [{"namespaceSelector": {}}]})
    problems, _ = netpol.check_network_policies(docs)
    assert any("gateway may open connections outside the cluster" in p for p in problems)


def test_only_the_gateway_and_dashboards_are_reachable_from_the_ingress(docs: list[dict]) -> None:
    policy = find(docs, "NetworkPolicy", "auth")
    policy["spec"]["ingress"].append(find(docs, "NetworkPolicy", "gateway")["spec"]["ingress"][0])
    policy["spec"]["ingress"][-1]["ports"] = [{"protocol": "TCP", "port": 50051}]
    problems, _ = netpol.check_network_policies(docs)
    assert any("ingress controller reaches" in p and "'auth', 50051" in p for p in problems)


def test_selectors_follow_kubernetes_semantics() -> None:
    labels = {"app": "a", "tier": "db"}
    assert netpol.selects({}, labels)
    assert not netpol.selects(None, labels)
    assert netpol.selects({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}, labels)
    assert not netpol.selects({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}, labels)
    assert netpol.selects({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, labels)
    assert not netpol.selects({"matchLabels": {"app": "a", "zone": "x"}}, labels)


# ---- environment variables -----------------------------------------------------------------------

def env_problems(root: Path, docs: list[dict], compose_doc: dict) -> list[str]:
    envs = envcheck.collect(root, docs, compose_doc)
    return envcheck.check(envs, rust_env.loopback_defaults(root / "platform/src/config.rs"))[0]


def test_the_repository_sets_only_variables_the_services_read(root: Path, docs: list[dict], compose_doc: dict) -> None:
    assert env_problems(root, docs, compose_doc) == []


def test_a_variable_no_service_reads_is_an_error(root: Path, docs: list[dict], compose_doc: dict) -> None:
    find(docs, "ConfigMap", "gateway-config")["data"]["GATEWAY_PORT"] = "8080"
    compose_doc["services"]["converter"]["environment"]["CONVERTER_THREADS"] = "2"
    problems = env_problems(root, docs, compose_doc)
    assert "gateway: k8s sets GATEWAY_PORT, which gateway never reads" in problems
    assert "converter: compose sets CONVERTER_THREADS, which converter never reads" in problems


def test_a_variable_of_another_service_is_an_error(root: Path, docs: list[dict], compose_doc: dict) -> None:
    compose_doc["services"]["converter"]["environment"]["SMTP_URL"] = "smtp://mailhog:1025"
    assert "converter: compose sets SMTP_URL, which converter never reads" in env_problems(root, docs, compose_doc)


def test_a_backing_service_url_left_to_its_loopback_default_is_an_error(
        root: Path, docs: list[dict], compose_doc: dict) -> None:
    c = container(docs, "Deployment", "converter")
    c["env"] = [e for e in c["env"] if e["name"] != "MONGODB_URI"]
    problems = env_problems(root, docs, compose_doc)
    assert any("converter: k8s leaves MONGODB_URI unset" in p for p in problems)


# ---- compose ---------------------------------------------------------------------------------------

def test_a_misspelt_compose_key_fails_the_schema(root: Path, compose_doc: dict) -> None:
    compose_doc["services"]["auth"]["helthcheck"] = compose_doc["services"]["auth"].pop("healthcheck")
    problems = compose.check_schema(compose_doc, root / "deploy/schemas/compose-spec.json")
    assert any("helthcheck" in p for p in problems)


def test_a_bad_depends_on_condition_fails_the_schema(root: Path, compose_doc: dict) -> None:
    compose_doc["services"]["gateway"]["depends_on"]["auth"]["condition"] = "service_ready"
    assert compose.check_schema(compose_doc, root / "deploy/schemas/compose-spec.json")


def test_a_healthcheck_on_the_wrong_port_is_caught(compose_doc: dict) -> None:
    compose_doc["services"]["notification"]["healthcheck"]["test"][-1] = "http://127.0.0.1:8082/readyz"
    assert any("compose service notification: healthcheck" in p for p in compose.check_semantics(compose_doc))


def test_a_gateway_healthcheck_on_its_public_port_is_caught(compose_doc: dict) -> None:
    compose_doc["services"]["gateway"]["healthcheck"]["test"][-1] = "http://127.0.0.1:8080/readyz"
    assert any("compose service gateway: healthcheck must GET /readyz on ADMIN_ADDR" in p
               for p in compose.check_semantics(compose_doc)), compose.check_semantics(compose_doc)


def test_waiting_for_a_service_without_healthcheck_is_caught(compose_doc: dict) -> None:
    compose_doc["services"]["mongodb"].pop("healthcheck")
    assert any("which has no healthcheck" in p for p in compose.check_semantics(compose_doc))


def test_a_published_internal_service_is_caught(compose_doc: dict) -> None:
    compose_doc["services"]["auth"]["ports"] = ["50051:50051"]
    assert any("auth publishes" in p for p in compose.check_semantics(compose_doc))


def test_compose_credentials_must_agree(compose_doc: dict) -> None:
    compose_doc["services"]["mysql"]["environment"]["MYSQL_PASSWORD"] = "changed"
    assert any("DATABASE_URL" in p for p in consistency.check_compose_wiring(compose_doc))


# ---- Dockerfile ------------------------------------------------------------------------------------

def test_a_missing_build_target_is_caught(tmp_path: Path, root: Path) -> None:
    for name in ("Dockerfile", ".dockerignore", "Cargo.toml"):
        shutil.copy(root / name, tmp_path / name)
    for crate in ("auth", "gateway", "converter", "notification"):
        (tmp_path / crate / "src").mkdir(parents=True)
        shutil.copy(root / crate / "Cargo.toml", tmp_path / crate / "Cargo.toml")
        (tmp_path / crate / "src" / "main.rs").write_text("fn main() {}\n", encoding="utf-8")
    assert dockerfile.check(tmp_path) == []
    text = (tmp_path / "Dockerfile").read_text(encoding="utf-8")
    (tmp_path / "Dockerfile").write_text(text.replace("FROM runtime AS notification", "FROM runtime AS notifier"),
                                         encoding="utf-8")
    (tmp_path / ".dockerignore").write_text("migrations/\nplatform\n", encoding="utf-8")
    problems = dockerfile.check(tmp_path)
    assert any("no target `notification`" in p for p in problems)
    assert any("leaves migrations out" in p for p in problems)
    assert any("leaves platform out" in p for p in problems), "workspace members are needed too"


# ---- generated secrets -----------------------------------------------------------------------------

def test_generated_secrets_replace_the_examples_consistently(root: Path, docs: list[dict]) -> None:
    import subprocess

    def generate() -> list[dict]:
        out = subprocess.run([str(root / "deploy/generate-secrets.sh")], check=True, capture_output=True, text=True).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    first, second = generate(), generate()
    assert {k8s.key(d) for d in first} == {k8s.key(d) for d in docs if d["kind"] == "Secret"}
    assert k8s.check_schemas(first, ["1.30.0"]) == []
    replaced = [d for d in docs if d["kind"] != "Secret"] + first
    assert consistency.check_references(replaced) == []
    assert consistency.check_k8s_wiring(replaced) == []
    text = yaml.safe_dump_all(first)
    assert "example-" not in text
    assert first != second, "every run draws new passwords"


def test_cargo_build_by_bin_name_is_caught(tmp_path: Path, root: Path) -> None:
    """`--bin auth` looks only in default-members (the all-in-one): the image build broke on it."""
    for name in ("Dockerfile", ".dockerignore", "Cargo.toml"):
        shutil.copy(root / name, tmp_path / name)
    for crate in ("auth", "gateway", "converter", "notification"):
        (tmp_path / crate / "src").mkdir(parents=True)
        shutil.copy(root / crate / "Cargo.toml", tmp_path / crate / "Cargo.toml")
        (tmp_path / crate / "src" / "main.rs").write_text("fn main() {}\n", encoding="utf-8")
    text = (tmp_path / "Dockerfile").read_text(encoding="utf-8")
    (tmp_path / "Dockerfile").write_text(text.replace("-p auth -p gateway", "--bin auth --bin gateway"),
                                         encoding="utf-8")
    problems = dockerfile.check(tmp_path)
    assert any("does not build -p auth" in p for p in problems)
    assert any("does not cook -p gateway" in p for p in problems)


def test_a_curl_healthcheck_is_caught(compose_doc: dict) -> None:
    compose_doc["services"]["converter"]["healthcheck"]["test"] = [
        "CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8082/readyz"]
    assert any("converter: healthcheck should run" in p for p in compose.check_semantics(compose_doc))
