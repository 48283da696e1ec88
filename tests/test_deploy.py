"""The container image and the Kubernetes manifests: linted, validated against the API's
schemas, and held to each other and to the server they start (ports, probes, files, user).

Nothing here builds an image or talks to a cluster (this machine has neither); what the
Dockerfile and deploy/k8s rely on is checked from the files themselves.
"""

from __future__ import annotations

import datetime
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from server.sim.universe import load_market
from tests.conftest import REPO_ROOT
from tests.deploy_args import (
    K8S_DIR,
    MOUNT_ROOT,
    container,
    container_files,
    deployment_args,
    flag_value,
    kustomization,
    lay_out_mounts,
    load_documents,
    resource,
)
from tests.test_packaging import SOURCES

DOCKERFILE = REPO_ROOT / "Dockerfile"
MAKEFILE = REPO_ROOT / "Makefile"
BIN = Path(sys.executable).parent
FILE_FLAGS = ("--market", "--tls-cert", "--tls-key", "--auth-tokens")


def _makefile_variable(name: str) -> str:
    match = re.search(rf"^{name} \??:?= *(.+)$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, f"{name} not set in the Makefile"
    return match[1].strip()


# The oldest Kubernetes the manifests claim to work with (`make lint` validates against it), and
# the newest one kubernetes-validate knows, so a field removed since is caught too.
KUBERNETES_VERSIONS = (_makefile_variable("KUBERNETES_VERSION"), kubernetes_validate.latest_version())


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs, continuation lines joined and comments left out."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    return instructions


def _instruction(keyword: str) -> list[str]:
    return [rest for kw, rest in _dockerfile() if kw == keyword]


def _exec_form(keyword: str) -> list[str]:
    """The last ``keyword`` (CMD, ENTRYPOINT) instruction, which must be in JSON (exec) form."""
    value = json.loads(_instruction(keyword)[-1])
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), value
    return value


def _pod_spec() -> dict:
    return resource("Deployment")["spec"]["template"]["spec"]


def _ports() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container()["ports"]}


# --- the linters -------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile():
    done = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_api_schemas(version):
    names = kustomization()["resources"]
    for name in names:
        for doc in load_documents(K8S_DIR / name):
            try:  # strict: a misspelt or misplaced field is an error, not ignored
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(str(part) for part in err.path)
                pytest.fail(f"{name}: {doc['kind']} {where}: {err.message} (Kubernetes {version})")
            # an unknown kind or apiVersion raises SchemaNotFoundError, which fails the test too


def test_the_validator_catches_a_misspelt_field():
    """The check above can fail: a field the API does not know is refused in strict mode."""
    doc = resource("Deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)


# --- the kustomization -------------------------------------------------------------------------


def test_the_kustomization_lists_exactly_the_files_in_its_folder():
    spec = kustomization()
    generated = {
        item.rpartition("=")[2]
        for section in ("configMapGenerator", "secretGenerator")
        for entry in spec.get(section, [])
        for item in entry.get("files", [])
    }
    secret_files = {
        item.rpartition("=")[2] for entry in spec["secretGenerator"] for item in entry.get("files", [])
    }
    tracked = {
        path.relative_to(K8S_DIR).as_posix()
        for path in K8S_DIR.rglob("*")
        if path.is_file() and path.parent.name != "secrets"
    }
    assert tracked == {"kustomization.yaml", *spec["resources"], *(generated - secret_files)}
    assert len(spec["resources"]) == len(set(spec["resources"]))
    assert all(name.startswith("secrets/") for name in secret_files)


def test_the_secret_files_are_kept_out_of_git():
    secret_files = [
        K8S_DIR / item.rpartition("=")[2]
        for entry in kustomization()["secretGenerator"]
        for item in entry["files"]
    ]
    kept = [K8S_DIR / "secrets" / "README.md", K8S_DIR / "secrets" / ".gitignore"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *map(str, secret_files + kept)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert sorted(ignored.stdout.split()) == sorted(map(str, secret_files))
    assert {"secrets/tls.crt", "secrets/tls.key", "secrets/tokens"} <= {
        p.relative_to(K8S_DIR).as_posix() for p in secret_files
    }


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed"
)
def test_kustomize_builds_objects_that_validate_and_reference_each_other(tmp_path):
    """`kubectl kustomize` (offline) over a copy of the folder, with placeholder secret files."""
    folder = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, folder)
    for name in ("tls.crt", "tls.key", "tokens"):
        (folder / "secrets" / name).write_text(f"placeholder {name}\n")
    done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    for doc in objects:
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)
    by_kind: dict[str, list[dict]] = {}
    for doc in objects:
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert sorted(by_kind) == [
        "ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget", "Secret", "Service"
    ]  # fmt: skip
    namespace = kustomization()["namespace"]
    assert all(doc["metadata"].get("namespace") == namespace for doc in objects if doc["kind"] != "Namespace")

    names = {(doc["kind"], doc["metadata"]["name"]) for doc in objects}
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    for volume in pod["volumes"]:  # the hashed names of the generated objects, followed
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in names
            assert re.fullmatch(r"marketdata-market-[a-z0-9]{10}", volume["configMap"]["name"])
        if "secret" in volume:  # fixed names: renewed files reach running pods, re-read in place
            assert ("Secret", volume["secret"]["secretName"]) in names
            assert volume["secret"]["secretName"] in ("marketdata-tls", "marketdata-tokens")
    (config_map,) = by_kind["ConfigMap"]
    assert config_map["data"]["market.toml"] == (K8S_DIR / "market.toml").read_text()
    tls = next(s for s in by_kind["Secret"] if s["metadata"]["name"] == "marketdata-tls")
    assert tls["type"] == "kubernetes.io/tls" and sorted(tls["data"]) == ["tls.crt", "tls.key"]
    tokens = next(s for s in by_kind["Secret"] if s["metadata"]["name"] == "marketdata-tokens")
    assert sorted(tokens["data"]) == ["tokens"]
    assert pod["containers"][0]["image"] == f"marketdata-grpc:{kustomization()['images'][0]['newTag']}"


# --- the Deployment against the server's flags --------------------------------------------------


def test_the_probes_ask_the_health_port_the_args_open():
    args = deployment_args()
    health_port = int(flag_value(args, "--health-port"))
    assert health_port != int(flag_value(args, "--port"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container()[probe]["grpc"] == {"port": health_port}, probe


def test_the_pod_outlives_the_servers_grace_period():
    grace = float(flag_value(deployment_args(), "--grace"))
    # SIGKILL comes this long after SIGTERM: the drain, then stopping the market and exiting.
    assert _pod_spec()["terminationGracePeriodSeconds"] >= grace + 5


def test_the_container_ports_are_the_ports_the_args_open():
    args = deployment_args()
    assert _ports() == {
        "grpc": int(flag_value(args, "--port")),
        "health": int(flag_value(args, "--health-port")),
        "metrics": int(flag_value(args, "--metrics-port")),
        "http": int(flag_value(args, "--http-port")),
    }
    assert flag_value(args, "--host") == "0.0.0.0"  # reachable from the kubelet and other pods
    annotations = resource("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == _ports()["metrics"]


def test_the_file_flags_name_exactly_the_files_the_volumes_mount():
    args = deployment_args()
    flagged = {flag_value(args, flag) for flag in FILE_FLAGS}
    assert flagged == set(container_files())
    assert container_files() == {
        f"{MOUNT_ROOT}/market/market.toml": K8S_DIR / "market.toml",
        f"{MOUNT_ROOT}/tls/tls.crt": K8S_DIR / "secrets" / "tls.crt",
        f"{MOUNT_ROOT}/tls/tls.key": K8S_DIR / "secrets" / "tls.key",
        f"{MOUNT_ROOT}/tokens/tokens": K8S_DIR / "secrets" / "tokens",
    }
    mounts = {mount["mountPath"]: mount for mount in container()["volumeMounts"]}
    assert all(mounts[str(Path(path).parent)].get("readOnly") for path in flagged)
    # mTLS stays off by default (the comment in deployment.yaml says how to turn it on)
    assert "--tls-client-ca" not in args


def test_the_args_can_be_moved_under_a_local_folder_and_the_files_laid_out_there(tmp_path):
    secrets = {}
    for inside in ("tls/tls.crt", "tls/tls.key", "tokens/tokens"):
        secrets[f"{MOUNT_ROOT}/{inside}"] = local = tmp_path / "given" / inside.replace("/", "-")
        local.parent.mkdir(exist_ok=True)
        local.write_text(inside)
    lay_out_mounts(tmp_path / "mounts", secrets)
    args = deployment_args(tmp_path / "mounts")
    assert len(args) == len(deployment_args())
    assert Path(flag_value(args, "--tls-key")).read_text() == "tls/tls.key"
    assert Path(flag_value(args, "--auth-tokens")).read_text() == "tokens/tokens"
    assert load_market(flag_value(args, "--market")).seed is not None


def test_the_root_filesystem_is_read_only_with_a_writable_tmp():
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    pod_security = _pod_spec()["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    (tmp,) = [m for m in container()["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in _pod_spec()["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume and not tmp.get("readOnly")


def test_resources_are_requested_and_capped():
    resources = container()["resources"]
    units = {"Mi": 2**20, "Gi": 2**30}

    def quantity(value: str) -> float:
        value = str(value)
        if value[-2:] in units:
            return float(value[:-2]) * units[value[-2:]]
        return float(value[:-1]) / 1000 if value.endswith("m") else float(value)

    for name in ("cpu", "memory"):
        assert 0 < quantity(resources["requests"][name]) <= quantity(resources["limits"][name]), name
    assert quantity(resources["requests"]["cpu"]) >= 1  # one process: one event loop, one core


def test_the_service_pdb_and_deployment_select_the_pods():
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert resource("Deployment")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert resource("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = resource("Service")["spec"]
    assert service["selector"].items() <= labels.items()
    # headless: DNS answers with every ready pod, and clients balance calls themselves
    assert service["clusterIP"] == "None"
    grpc_port, http_port = service["ports"]
    assert (grpc_port["name"], grpc_port["appProtocol"], grpc_port["targetPort"]) == ("grpc", "grpc", "grpc")
    assert grpc_port["port"] == _ports()["grpc"]
    assert (http_port["name"], http_port["appProtocol"], http_port["targetPort"]) == ("http", "https", "http")
    assert http_port["port"] == _ports()["http"]
    assert (
        resource("Deployment")["spec"]["replicas"] > resource("PodDisruptionBudget")["spec"]["maxUnavailable"]
    )


def test_the_market_file_loads_and_fixes_seed_and_epoch():
    path = K8S_DIR / "market.toml"
    market = load_market(path)
    assert market.seed is not None and len(market.symbols) >= 3
    table = tomllib.loads(path.read_text())["market"]
    epoch = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert table["epoch"] == epoch
    assert market.epoch == epoch.timestamp()  # every pod's clock starts there


# --- the Dockerfile against the server and the manifests ----------------------------------------


def test_the_healthcheck_asks_the_health_port_the_default_command_opens():
    cmd = _exec_form("CMD")
    (healthcheck,) = _instruction("HEALTHCHECK")
    options, _, check = healthcheck.partition(" CMD ")
    check = json.loads(check)
    assert check[:2] == ["marketdata-client", "health"]
    assert flag_value(check, "--target") == f"127.0.0.1:{flag_value(cmd, '--health-port')}"
    assert "--timeout=" in options and "--interval=" in options


def test_the_image_exposes_the_ports_of_its_command_and_of_the_deployment():
    cmd = _exec_form("CMD")
    exposed = {int(port) for rest in _instruction("EXPOSE") for port in rest.split()}
    flags = ("--port", "--health-port", "--metrics-port", "--http-port")
    assert exposed == {int(flag_value(cmd, flag)) for flag in flags}
    assert exposed == set(_ports().values())


def test_the_image_runs_the_server_as_the_deployments_non_root_user():
    (stop,) = _instruction("STOPSIGNAL")
    assert stop == "SIGTERM"
    user = _instruction("USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    pod_security = _pod_spec()["securityContext"]
    assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == (int(uid), int(gid))
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert _exec_form("ENTRYPOINT") == ["marketdata-server"]
    assert {"marketdata-server", "marketdata-client"} <= scripts.keys()


def test_both_stages_start_from_one_pinned_slim_python():
    bases = [rest.split()[0] for rest in _instruction("FROM")]
    assert len(bases) == 2 and bases[0] == bases[1]  # the venv copied across needs the same interpreter
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-\w+", bases[0])


def test_the_image_generates_the_code_exactly_as_the_makefile_does():
    recipe = re.search(r"^\$\(PROTO_OUT\) &:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.MULTILINE)
    assert recipe, "the proto rule is not in the Makefile"
    make_words = shlex.split(recipe[1].replace("\\\n", " "))
    make_words = [
        {"$(PY)": "python", "$(PROTO_SRC)": _makefile_variable("PROTO_SRC")}.get(w, w) for w in make_words
    ]
    runs = [shlex.split(rest) for rest in _instruction("RUN")]
    protoc = [run[: run.index("&&")] if "&&" in run else run for run in runs if "grpc_tools.protoc" in run]
    assert protoc == [make_words]


def test_the_image_copies_the_sources_the_wheel_is_built_from():
    copied = set()
    for rest in _instruction("COPY"):
        if rest.startswith("--from="):
            continue
        copied.update(source.rstrip("/") for source in rest.split()[:-1])
    assert copied == set(SOURCES)
    # the build context holds those and nothing else (.dockerignore lets only them through)
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("#")]
    assert lines[0] == "*"
    assert {line[1:].rstrip("/") for line in lines if line.startswith("!")} == set(SOURCES)


def test_the_deployment_runs_the_image_version_of_the_project():
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    (image,) = kustomization()["images"]
    assert (image["name"], image["newTag"]) == (container()["image"], version)
