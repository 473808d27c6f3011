"""Evaluating the NetworkPolicies as the cluster would: who may open which port of whom.

Kubernetes semantics: a pod selected by no policy of a direction is open in that direction; a
pod selected by some policies of a direction accepts the union of their rules. A connection
needs both the source's egress and the destination's ingress to allow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .k8s import NAMESPACE, containers, pod_labels, pod_spec, workloads


@dataclass(frozen=True)
class Pod:
    """A pod as a policy sees it: its namespace's labels and its own labels."""

    name: str
    namespace_labels: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    ports: tuple[tuple[str, int], ...] = ()

    @property
    def namespace(self) -> str:
        return dict(self.namespace_labels)["kubernetes.io/metadata.name"]


def outside(namespace: str, labels: dict[str, str], name: str | None = None) -> Pod:
    return Pod(name or f"{namespace}/{labels}", (("kubernetes.io/metadata.name", namespace),),
               tuple(sorted(labels.items())))


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(k) not in values:
            return False
        if op == "NotIn" and k in labels and labels[k] in values:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_namespace: str, other: Pod) -> bool:
    if "ipBlock" in peer:
        return False  # addresses outside the cluster's pods: not evaluated here
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None:
        in_namespace = other.namespace == policy_namespace
    else:
        in_namespace = selects(ns_selector, dict(other.namespace_labels))
    pod_selector = peer.get("podSelector")
    return in_namespace and (pod_selector is None or selects(pod_selector, dict(other.labels)))


def port_matches(rule_ports: list[dict[str, Any]] | None, target: Pod, port: int) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        value = p.get("port")
        if value is None:
            return True
        if isinstance(value, str):
            value = dict(target.ports).get(value)
        end = p.get("endPort", value)
        if value is not None and value <= port <= end:
            return True
    return False


def allowed(policies: list[dict[str, Any]], source: Pod, target: Pod, port: int) -> bool:
    """Whether `source` may open TCP `port` of `target` under `policies` (all of NAMESPACE)."""

    def direction(pod: Pod, kind: str) -> list[dict[str, Any]]:
        return [
            p for p in policies
            if pod.namespace == p["metadata"].get("namespace", NAMESPACE)
            and kind in p["spec"].get("policyTypes", ["Ingress"])
            and selects(p["spec"].get("podSelector", {}), dict(pod.labels))
        ]

    egress_policies = direction(source, "Egress")
    if egress_policies:
        ok = any(
            port_matches(rule.get("ports"), target, port)
            and (not rule.get("to") or any(peer_matches(peer, NAMESPACE, target) for peer in rule["to"]))
            for p in egress_policies for rule in p["spec"].get("egress") or []
        )
        if not ok:
            return False
    ingress_policies = direction(target, "Ingress")
    if ingress_policies:
        return any(
            port_matches(rule.get("ports"), target, port)
            and (not rule.get("from") or any(peer_matches(peer, NAMESPACE, source) for peer in rule["from"]))
            for p in ingress_policies for rule in p["spec"].get("ingress") or []
        )
    return True


def namespace_pods(docs: list[dict[str, Any]]) -> list[Pod]:
    ns = next(d for d in docs if d.get("kind") == "Namespace" and d["metadata"]["name"] == NAMESPACE)
    ns_labels = dict(ns["metadata"].get("labels") or {})
    ns_labels["kubernetes.io/metadata.name"] = NAMESPACE
    pods = []
    for doc in workloads(docs):
        ports = tuple(
            (p["name"], p["containerPort"]) if "name" in p else (str(p["containerPort"]), p["containerPort"])
            for c in containers(pod_spec(doc)) for p in c.get("ports") or []
        )
        pods.append(Pod(doc["metadata"]["name"], tuple(sorted(ns_labels.items())),
                        tuple(sorted(pod_labels(doc).items())), ports))
    return pods


def connections(docs: list[dict[str, Any]], sources: list[Pod]) -> set[tuple[str, str, int]]:
    """Every (source, target workload, container port) the policies allow."""
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    targets = namespace_pods(docs)
    return {
        (s.name, t.name, port)
        for s in sources for t in targets if s.name != t.name
        for _, port in t.ports
        if allowed(policies, s, t, port)
    }


INGRESS_CONTROLLER = outside("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, "ingress-nginx")
PROMETHEUS = outside("monitoring", {"app.kubernetes.io/name": "prometheus"}, "prometheus")
STRANGER = outside("default", {"app": "anything"}, "a pod of another namespace")

# The brief's matrix: owners of each datastore, the gateway as the only public entry point.
EXPECTED_INSIDE = {
    ("auth", "mysql", 3306),
    ("gateway", "auth", 50051),
    ("gateway", "mongodb", 27017),
    ("converter", "mongodb", 27017),
    ("notification", "mongodb", 27017),
    ("gateway", "rabbitmq", 5672),
    ("converter", "rabbitmq", 5672),
    ("notification", "rabbitmq", 5672),
    ("notification", "mailhog", 1025),
}
EXPECTED_FROM_INGRESS = {
    ("ingress-nginx", "gateway", 8080),
    ("ingress-nginx", "rabbitmq", 15672),
    ("ingress-nginx", "mailhog", 8025),
}


def check_network_policies(docs: list[dict[str, Any]]) -> tuple[list[str], str]:
    problems: list[str] = []
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    pods = namespace_pods(docs)
    default_deny = [
        p for p in policies
        if p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    if not default_deny:
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    for pod in pods:
        own = [p for p in policies if p["spec"].get("podSelector") and selects(p["spec"]["podSelector"], dict(pod.labels))
               and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}]
        if not own:
            problems.append(f"workload {pod.name} has no NetworkPolicy of its own (Ingress and Egress)")

    inside = connections(docs, pods)
    for extra in sorted(inside - EXPECTED_INSIDE):
        problems.append(f"allowed but not intended: {extra[0]} → {extra[1]}:{extra[2]}")
    for missing in sorted(EXPECTED_INSIDE - inside):
        problems.append(f"intended but blocked: {missing[0]} → {missing[1]}:{missing[2]}")
    from_ingress = connections(docs, [INGRESS_CONTROLLER])
    if from_ingress != EXPECTED_FROM_INGRESS:
        problems.append(f"the ingress controller reaches {sorted(from_ingress)}, expected {sorted(EXPECTED_FROM_INGRESS)}")
    from_stranger = connections(docs, [STRANGER])
    if from_stranger:
        problems.append(f"a pod of another namespace reaches {sorted(from_stranger)}")
    scrapes = connections(docs, [PROMETHEUS])
    if ("prometheus", "gateway", 8080) in scrapes:
        problems.append("Prometheus reaches the gateway's public port 8080; metrics are on its internal 8084")
    scraped = {t for _, t, _ in scrapes}
    if scraped != {"gateway", "auth", "converter", "notification", "rabbitmq"}:
        problems.append(f"Prometheus (namespace monitoring) can scrape {sorted(scraped)} only")

    # DNS: every pod may reach kube-dns on 53 and nothing else outside.
    dns = Pod("kube-dns", (("kubernetes.io/metadata.name", "kube-system"),), (("k8s-app", "kube-dns"),),
              (("dns", 53),))
    world = Pod("the internet", (("kubernetes.io/metadata.name", "elsewhere"),), (), (("https", 443),))
    for pod in pods:
        if not allowed(policies, pod, dns, 53):
            problems.append(f"{pod.name} cannot resolve names (no egress to kube-dns:53)")
        if allowed(policies, pod, world, 443):
            problems.append(f"{pod.name} may open connections outside the cluster")
    summary = (f"{len(policies)} policies, {len(inside)} allowed paths inside, "
               f"{len(from_ingress)} from the ingress controller")
    return problems, summary
