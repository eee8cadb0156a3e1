"""Lints and renders helm/streamfold with Helm's own library
(helm-python-sdk) for the default values and each file in ci/, validates
the rendered core kinds with kubernetes-validate, and checks the chart's
own guards. Exits non-zero naming the file and problem.

    python check_chart.py CHART_DIR
"""

import pathlib
import sys

import helm_python as helm
import kubernetes_validate
import yaml

# Kinds kubernetes-validate knows; the CRDs (ServiceMonitor, PrometheusRule,
# ScaledObject) are checked by rendering and structure only.
CORE = {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
KUBE = "1.30.0"


def fail(msg):
    sys.exit(f"check_chart: {msg}")


def render(chart, values, source):
    try:
        chart.validate_schema(values)
        return chart.render(values, name="payments", namespace="streaming", is_install=True)
    except helm.HelmError as e:
        fail(f"{source}: rendering failed: {e}")


def main():
    chart_dir = pathlib.Path(sys.argv[1])
    chart = helm.Chart.load(chart_dir)
    sets = [("default values", {})]
    for f in sorted((chart_dir / "ci").glob("*.yaml")):
        sets.append((str(f), yaml.safe_load(f.read_text()) or {}))
    for source, values in sets:
        report = helm.lint(chart_dir, values, strict=True, kube_version=f"v{KUBE}")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        if problems or report.get("errors"):
            fail(f"{source}: helm lint: {problems or report['errors']}")
        manifests = render(chart, values, source)
        kinds = []
        for path, text in manifests.items():
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                kinds.append(doc["kind"])
                if doc["kind"] in CORE:
                    try:
                        kubernetes_validate.validate(doc, KUBE, strict=True)
                    except kubernetes_validate.ValidationError as e:
                        fail(f"{source}: {path}: {doc['kind']} is not valid Kubernetes {KUBE}: {e.message}")
                if doc["kind"] == "Deployment":
                    check_deployment(doc, values, source)
        print(f"{source}: {len(kinds)} manifests ({', '.join(sorted(kinds))}) lint, render and validate")
    # Guards: mutually exclusive autoscalers, replicas capped at partitions.
    for values, words in [
        ({"autoscaling": {"hpa": {"enabled": True}, "keda": {"enabled": True}}}, "mutually exclusive"),
        ({"replicaCount": 9, "partitions": 8}, "exceeds partitions"),
    ]:
        try:
            chart.render(values, name="payments", namespace="streaming")
        except helm.HelmError as e:
            if words not in str(e):
                fail(f"guard for {values}: unexpected error {e}")
        else:
            fail(f"guard for {values}: rendered without an error")
    try:
        chart.validate_schema({"replicaCount": "two"})
    except helm.HelmError:
        pass
    else:
        fail("values.schema.json accepted replicaCount = 'two'")
    hpa = render(chart, {"partitions": 3, "replicaCount": 1, "autoscaling": {"hpa": {"enabled": True, "maxReplicas": 10}}}, "hpa cap")
    docs = [d for t in hpa.values() for d in yaml.safe_load_all(t) if d]
    caps = [d["spec"]["maxReplicas"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if caps != [3]:
        fail(f"HPA maxReplicas not capped at the 3 partitions: {caps}")
    print("guards hold")


def check_deployment(d, values, source):
    pod = d["spec"]["template"]
    spec = pod["spec"]
    c = spec["containers"][0]
    if "checksum/config" not in pod["metadata"].get("annotations", {}):
        fail(f"{source}: no config checksum annotation")
    if not spec["securityContext"].get("runAsNonRoot"):
        fail(f"{source}: pod may run as root")
    if not c["securityContext"].get("readOnlyRootFilesystem"):
        fail(f"{source}: root filesystem is writable")
    if c["livenessProbe"]["httpGet"]["path"] != "/healthz" or c["readinessProbe"]["httpGet"]["path"] != "/readyz":
        fail(f"{source}: probes not wired to /healthz and /readyz")
    grace = spec["terminationGracePeriodSeconds"]
    config = values.get("config") or yaml.safe_load(open(pathlib.Path(sys.argv[1]) / "values.yaml"))["config"]
    import tomllib

    drain = tomllib.loads(config).get("commit", {}).get("drain_deadline", "10s")
    seconds = int(drain.rstrip("s"))
    # A stopping pod drains (up to the deadline), leaves its group (up to
    # the deadline again), then stops its tasks and flushes (5 s each).
    if grace <= 2 * seconds + 10:
        fail(f"{source}: terminationGracePeriodSeconds {grace} is not longer than twice the drain deadline {drain} and 10 s")


if __name__ == "__main__":
    main()
