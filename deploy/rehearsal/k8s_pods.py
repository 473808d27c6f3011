"""Runs the pod of every Deployment and StatefulSet in k8s/ with podman, as far as podman can
express it, and waits for each readiness probe. Part of deploy/rehearse.sh (step `k8s`).

From each manifest (rendered with `kubectl kustomize k8s/`): the image, command and args; the
environment (`env` values, `valueFrom` Secret and ConfigMap keys, `envFrom`); the pod and container
security context (runAsUser/runAsGroup, fsGroup as a supplementary group and the group of the
volumes, readOnlyRootFilesystem without podman's extra tmpfs mounts, dropped capabilities,
no-new-privileges); the volumes (emptyDir as an empty 0777 directory, or tmpfs for
medium: Memory; Secrets as files with their defaultMode and items, subPath mounts; a
volumeClaimTemplate as an empty directory owned by root:fsGroup, mode 2775); memory and CPU limits;
and the probes: startup, then readiness (httpGet and tcpSocket from the host to the pod's address,
exec with `podman exec`), with their periods, timeouts and thresholds. The Services become DNS
names on one podman network (each pod answers to the Services that select it).

Not expressed, and printed as such: NetworkPolicies, Ingress, PodDisruptionBudgets, the
HorizontalPodAutoscaler, replicas (one pod each), resource requests, emptyDir sizeLimit,
fsGroupChangePolicy, liveness probes (not run continuously), the Pod Security Admission label.

Prints one line per pod, then a summary line; exits 1 unless every pod became ready.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "target" / "rehearsal" / "k8s"
NETWORK = "mp3converter-k8s"
LABEL = "mp3converter-rehearsal=k8s"
# Backing services first: the services wait for them anyway, but a clean order gives clean timings.
ORDER = ["mysql", "mongodb", "rabbitmq", "mailhog", "auth", "gateway", "converter", "notification"]
NOT_EXPRESSED = [
    "NetworkPolicies (podman has no per-pod network policy)",
    "Ingress (the gateway is reached on its pod address instead)",
    "PodDisruptionBudgets, the HorizontalPodAutoscaler and replicas (one pod each)",
    "resource requests (limits are applied), emptyDir sizeLimit, fsGroupChangePolicy",
    "liveness probes (checked once after readiness, not continuously)",
    "the namespace's Pod Security Admission (the manifests' own settings are applied)",
]


def podman(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True,
                          check=check, timeout=timeout)


def rendered() -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s")], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def secret_data(doc: dict) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
    data.update({k: v.encode() for k, v in (doc.get("stringData") or {}).items()})
    return data


def resolve_port(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    raise ValueError(f"unknown port name {port}")


def memory_limit(value: str) -> str:
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, unit in units.items():
        if value.endswith(suffix):
            return value[: -len(suffix)] + unit
    return value


def cpu_limit(value: str | int | float) -> str:
    text = str(value)
    return str(int(text[:-1]) / 1000) if text.endswith("m") else text


class Pod:
    def __init__(self, workload: dict, docs: list[dict]) -> None:
        self.kind = workload["kind"]
        self.name = workload["metadata"]["name"]
        self.workload = workload
        self.spec = workload["spec"]["template"]["spec"]
        self.container = self.spec["containers"][0]
        self.labels = workload["spec"]["template"]["metadata"].get("labels") or {}
        self.secrets = {d["metadata"]["name"]: secret_data(d) for d in docs if d["kind"] == "Secret"}
        self.configmaps = {d["metadata"]["name"]: {k: v.encode() for k, v in (d.get("data") or {}).items()}
                           for d in docs if d["kind"] == "ConfigMap"}
        self.services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service" and (
            d["spec"].get("selector") and all(self.labels.get(k) == v for k, v in d["spec"]["selector"].items()))]
        self.hostname = f"{self.name}-0" if self.kind == "StatefulSet" else self.name
        self.container_name = f"k8s-{self.name}"
        self.notes: list[str] = []

    def env(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for source in self.container.get("envFrom") or []:
            if "configMapRef" in source:
                result.update({k: v.decode() for k, v in self.configmaps[source["configMapRef"]["name"]].items()})
            if "secretRef" in source:
                result.update({k: v.decode() for k, v in self.secrets[source["secretRef"]["name"]].items()})
        for item in self.container.get("env") or []:
            if "value" in item:
                result[item["name"]] = str(item["value"])
            elif "secretKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["secretKeyRef"]
                result[item["name"]] = self.secrets[ref["name"]][ref["key"]].decode()
            elif "configMapKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["configMapKeyRef"]
                result[item["name"]] = self.configmaps[ref["name"]][ref["key"]].decode()
            else:
                self.notes.append(f"env {item['name']}: {list(item.get('valueFrom', {}))} not expressed")
        return result

    def volume_args(self, fs_group: int | None) -> list[str]:
        base = WORK / self.name
        volumes = {v["name"]: v for v in self.spec.get("volumes") or []}
        for template in self.workload["spec"].get("volumeClaimTemplates") or []:
            volumes[template["metadata"]["name"]] = {"name": template["metadata"]["name"], "pvc": True}
        args: list[str] = []
        for mount in self.container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            path = base / mount["name"]
            read_only = ":ro" if mount.get("readOnly") else ""
            if "emptyDir" in volume and (volume["emptyDir"] or {}).get("medium") == "Memory":
                args += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
                continue
            if not path.exists():
                path.mkdir(parents=True)
                if "emptyDir" in volume:
                    path.chmod(0o777)  # an emptyDir is world-writable
                elif volume.get("pvc"):
                    # A fresh PersistentVolume with fsGroup: group-owned by it, setgid, g+rwx.
                    os.chown(path, 0, fs_group if fs_group is not None else 0)
                    path.chmod(0o2775)
                elif "secret" in volume or "configMap" in volume:
                    kind = "secret" if "secret" in volume else "configMap"
                    source = volume[kind]
                    data = (self.secrets if kind == "secret" else self.configmaps)[
                        source["secretName" if kind == "secret" else "name"]]
                    items = source.get("items") or [{"key": k, "path": k} for k in data]
                    mode = source.get("defaultMode", 0o644)
                    for item in items:
                        target = path / item["path"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data[item["key"]])
                        os.chown(target, 0, fs_group if fs_group is not None else 0)
                        target.chmod(item.get("mode", mode))
                    path.chmod(0o755)
                else:
                    self.notes.append(f"volume {mount['name']}: {sorted(volume)} not expressed")
            source_path = path / mount["subPath"] if mount.get("subPath") else path
            args += ["-v", f"{source_path}:{mount['mountPath']}{read_only}"]
        return args

    def run(self) -> None:
        pod_sc = self.spec.get("securityContext") or {}
        sc = {**pod_sc, **(self.container.get("securityContext") or {})}
        fs_group = pod_sc.get("fsGroup")
        args = ["run", "-d", "--name", self.container_name, "--label", LABEL, "--network", NETWORK,
                "--hostname", self.hostname]
        for alias in self.services:
            args += ["--network-alias", alias]
        if "runAsUser" in sc:
            args += ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
        if fs_group is not None:
            args += ["--group-add", str(fs_group)]
        if sc.get("readOnlyRootFilesystem"):
            # Kubernetes adds no writable /tmp, /run or /var/tmp: neither must podman.
            args += ["--read-only", "--read-only-tmpfs=false"]
        for cap in (sc.get("capabilities") or {}).get("drop") or []:
            args += ["--cap-drop", cap]
        for cap in (sc.get("capabilities") or {}).get("add") or []:
            args += ["--cap-add", cap]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        limits = (self.container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            args += ["--memory", memory_limit(limits["memory"])]
        if "cpu" in limits:
            args += ["--cpus", cpu_limit(limits["cpu"])]
        if "terminationGracePeriodSeconds" in self.spec:
            args += ["--stop-timeout", str(self.spec["terminationGracePeriodSeconds"])]
        for key, value in self.env().items():
            args += ["-e", f"{key}={value}"]
        args += self.volume_args(fs_group)
        if self.container.get("command"):
            args += ["--entrypoint", self.container["command"][0]]
        args.append(self.container["image"])
        if self.container.get("command"):
            args += self.container["command"][1:]
        args += [str(a) for a in self.container.get("args") or []]
        podman(*args)

    def address(self) -> str:
        return podman("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}",
                      self.container_name).stdout.strip()

    def probe(self, probe: dict) -> bool:
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                port = resolve_port(self.container, probe["httpGet"]["port"])
                url = f"http://{self.address()}:{port}{probe['httpGet'].get('path', '/')}"
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return 200 <= response.status < 400
            if "tcpSocket" in probe:
                port = resolve_port(self.container, probe["tcpSocket"]["port"])
                with socket.create_connection((self.address(), port), timeout=timeout):
                    return True
            if "exec" in probe:
                return podman("exec", self.container_name, *probe["exec"]["command"],
                              check=False, timeout=timeout + 5).returncode == 0
        except Exception:  # noqa: BLE001 (any failure is a failed probe)
            return False
        return False

    def running(self) -> bool:
        return podman("inspect", "-f", "{{.State.Running}}", self.container_name, check=False).stdout.strip() == "true"

    def wait(self, name: str, probe: dict, limit: float) -> tuple[bool, str]:
        """Runs a probe every periodSeconds until successThreshold passes or failureThreshold fails."""
        period = probe.get("periodSeconds", 10)
        failures_allowed = probe.get("failureThreshold", 3)
        # A readiness probe's failures do not restart a pod: keep trying until the time limit.
        deadline = time.monotonic() + (limit if name == "readiness" else min(limit, period * failures_allowed + 5))
        time.sleep(min(probe.get("initialDelaySeconds", 0), 60))
        failures = 0
        while time.monotonic() < deadline:
            if not self.running():
                return False, f"{name}: container exited"
            if self.probe(probe):
                return True, ""
            failures += 1
            # Poll faster than the period while waiting (it only shortens the wait), but count
            # failures against the threshold at the manifest's period.
            time.sleep(min(period, 2))
        return False, f"{name} probe still failing after {failures} tries"


def main() -> int:
    docs = rendered()
    podman("rm", "-f", "-v", "--filter", f"label={LABEL}", check=False)
    podman("rm", "-f", "-v", *[f"k8s-{n}" for n in ORDER], check=False)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    if podman("network", "exists", NETWORK, check=False).returncode != 0:
        podman("network", "create", NETWORK)
    workloads = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
    names = [n for n in ORDER if n in workloads] + sorted(set(workloads) - set(ORDER))
    ready: list[str] = []
    failed: list[str] = []
    start = time.monotonic()
    for name in names:
        pod = Pod(workloads[name], docs)
        t0 = time.monotonic()
        try:
            pod.run()
        except subprocess.CalledProcessError as error:
            print(f"  {name:13} FAIL  podman run: {error.stderr.strip()}")
            failed.append(name)
            continue
        ok, why = True, ""
        if "startupProbe" in pod.container:
            ok, why = pod.wait("startup", pod.container["startupProbe"], 600)
        if ok and "readinessProbe" in pod.container:
            ok, why = pod.wait("readiness", pod.container["readinessProbe"], 300)
        live = ""
        if ok and "livenessProbe" in pod.container:
            live = ", liveness ok" if pod.probe(pod.container["livenessProbe"]) else ", LIVENESS FAILED"
            ok = "FAILED" not in live
        sc = {**(pod.spec.get("securityContext") or {}), **(pod.container.get("securityContext") or {})}
        facts = f"uid {sc.get('runAsUser', 'image')}, {'read-only root' if sc.get('readOnlyRootFilesystem') else 'writable root'}"
        if ok:
            ready.append(name)
            print(f"  {name:13} READY after {time.monotonic() - t0:5.1f} s ({pod.kind}, {facts}{live}; "
                  f"DNS {', '.join(pod.services) or '-'}){' ' + '; '.join(pod.notes) if pod.notes else ''}", flush=True)
        else:
            failed.append(name)
            logs = podman("logs", "--tail", "15", pod.container_name, check=False)
            print(f"  {name:13} FAIL  {why} ({facts})\n" + "\n".join(
                "      " + line for line in (logs.stdout + logs.stderr).splitlines()), flush=True)
    print("  not expressed with podman: " + "; ".join(NOT_EXPRESSED))
    if os.environ.get("REHEARSAL_KEEP_K8S") != "1":
        podman("rm", "-f", "-v", "-t", "5", "--filter", f"label={LABEL}", check=False)
    print(f"{len(ready)}/{len(names)} pods ready in {time.monotonic() - start:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
