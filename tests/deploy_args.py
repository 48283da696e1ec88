"""What deploy/k8s asks of the server, read from the manifests themselves.

The Deployment's container args are the server's command line in the cluster;
``deployment_args(mount_root)`` gives them with the in-container paths moved
under a local folder, and ``lay_out_mounts`` fills that folder the way the
kubelet fills the pod's volumes, so a test can run ``python -m server`` exactly
as a pod would.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO_ROOT

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
# Where the pod's ConfigMap and Secret volumes are mounted: the prefix of every file flag.
MOUNT_ROOT = "/etc/marketdata"
CONTAINER = "server"


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a file."""
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def kustomization() -> dict[str, Any]:
    (doc,) = load_documents(KUSTOMIZATION)
    return doc


def resource(kind: str) -> dict[str, Any]:
    """The one object of ``kind`` among the kustomization's resource files."""
    found = [
        doc
        for name in kustomization()["resources"]
        for doc in load_documents(K8S_DIR / name)
        if doc.get("kind") == kind
    ]
    assert len(found) == 1, f"{len(found)} objects of kind {kind} in {K8S_DIR}"
    return found[0]


def container() -> dict[str, Any]:
    """The server's container in the Deployment's pod template."""
    containers = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    (found,) = [c for c in containers if c["name"] == CONTAINER]
    return found


def deployment_args(mount_root: str | Path | None = None) -> list[str]:
    """The server's flags as the Deployment gives them, every value a string.

    With ``mount_root``, paths under /etc/marketdata are moved under that folder
    (``lay_out_mounts`` puts the files there).
    """
    args = [str(arg) for arg in container()["args"]]
    if mount_root is None:
        return args
    return [
        str(Path(mount_root) / Path(arg).relative_to(MOUNT_ROOT)) if arg.startswith(MOUNT_ROOT + "/") else arg
        for arg in args
    ]


def flag_value(args: list[str], flag: str) -> str:
    """The value following ``flag`` in ``args`` (which must hold it once)."""
    assert args.count(flag) == 1, f"{flag} appears {args.count(flag)} times in {args}"
    return args[args.index(flag) + 1]


def _generated(section: str) -> dict[str, dict[str, Path]]:
    """A kustomize generator section: name -> {key in the object: file in deploy/k8s}."""
    objects = {}
    for entry in kustomization().get(section, []):
        files = {}
        for item in entry.get("files", []):
            key, _, source = item.rpartition("=")
            files[key or Path(source).name] = K8S_DIR / source
        objects[entry["name"]] = files
    return objects


def container_files() -> dict[str, Path]:
    """Each file the pod sees under its mounts -> the file in deploy/k8s it comes from.

    Follows the container's volumeMounts to the pod's volumes, and each ConfigMap or
    Secret volume to the kustomization's generator of that name.
    """
    pod = resource("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    config_maps = _generated("configMapGenerator")
    secrets = _generated("secretGenerator")
    files = {}
    for mount in container().get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            keys = config_maps[volume["configMap"]["name"]]
        elif "secret" in volume:
            keys = secrets[volume["secret"]["secretName"]]
        else:
            continue
        for key, source in keys.items():
            files[f"{mount['mountPath'].rstrip('/')}/{key}"] = source
    return files


def lay_out_mounts(mount_root: str | Path, secrets: Mapping[str, str | Path] | None = None) -> None:
    """Fill ``mount_root`` as the pod's volumes would be: the market file from deploy/k8s, and
    each secret file from ``secrets`` (its in-container path -> a local file), since
    deploy/k8s/secrets/ holds none in git."""
    secrets = dict(secrets or {})
    for inside, source in container_files().items():
        target = Path(mount_root) / Path(inside).relative_to(MOUNT_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        origin = Path(secrets.pop(inside)) if inside in secrets else source
        shutil.copyfile(origin, target)
    assert not secrets, f"no mount holds {sorted(secrets)}"
