"""The Azure Container Apps hosting option (GPUs, more memory, longer start-up) cross-checked with the app and
with the Flex Consumption option: the Dockerfile's base image and packages, what the image carries, the azd
switch between the two hosts, and the container app's identity-only settings. The image is never built here
(no container runtime); hadolint and checkov lint the Dockerfile instead."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy import bicep
from tests.deploy.test_package import NOT_DEPLOYED, package_files

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
BASE_IMAGE = "mcr.microsoft.com/azure-functions/python:4-python3.13"
GPU_PROFILES = ["none", "Consumption-GPU-NC8as-T4", "Consumption-GPU-NC24-A100"]


def instructions(source: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuation lines joined."""
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#")))
    parsed = []
    for line in logical.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            parsed.append((keyword.upper(), " ".join(arguments.split())))
    return parsed


def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def test_the_image_is_microsoft_s_functions_image_for_the_flex_python_version() -> None:
    (base,) = [arguments for keyword, arguments in dockerfile() if keyword == "FROM"]
    assert base == BASE_IMAGE
    version = re.search(r"runtime: \{\s*name: 'python'\s*version: '([\d.]+)'\s*\}", bicep.text("function-app.bicep"))
    assert version and base.endswith(f"-python{version.group(1)}") and version.group(1) == "3.13"
    # Until the first `azd deploy`, the container app runs the base image: a Functions host without functions.
    assert f"param containerImage string = '{BASE_IMAGE}'" in bicep.text("main.bicep")


def test_the_image_installs_requirements_txt_into_the_functions_host() -> None:
    steps = dockerfile()
    assert ("COPY", "requirements.txt /requirements.txt") in steps
    installs = [arguments for keyword, arguments in steps if keyword == "RUN" and "pip install" in arguments]
    assert len(installs) == 1 and installs[0].endswith("python -m pip install -r /requirements.txt"), installs
    assert steps[-1] == ("COPY", ". /home/site/wwwroot")
    env = " ".join(arguments for keyword, arguments in steps if keyword == "ENV")
    assert "AzureWebJobsScriptRoot=/home/site/wwwroot" in env


def test_cpu_torch_comes_from_the_index_the_flex_build_uses_and_cuda_is_a_build_argument() -> None:
    steps = dockerfile()
    assert ("ARG", "TORCH_BUILD=cpu") in steps
    flex_index = bicep.string_value(
        bicep.object_var(bicep.text("function-app.bicep"), "remoteBuildSettings")["PIP_EXTRA_INDEX_URL"]
    )
    (install,) = [arguments for keyword, arguments in steps if keyword == "RUN" and "TORCH_BUILD" in arguments]
    assert f"cpu) export PIP_EXTRA_INDEX_URL={flex_index} ;;" in install
    assert "cuda) ;;" in install  # PyPI's Linux torch wheels are the CUDA build
    assert re.search(r"\*\) echo .*exit 1", install), "an unknown TORCH_BUILD must fail the build"
    service = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())["services"]["api-aca"]
    assert service["docker"]["buildArgs"] == ["TORCH_BUILD=${TORCH_BUILD=cuda}"]
    assert "output TORCH_BUILD string = gpuProfile == 'none' ? 'cpu' : 'cuda'" in bicep.text("main.bicep")


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore line as Docker reads it: cleaned (no leading or trailing ``/``), ``**`` for any
    number of folders, ``*`` and ``?`` within one path segment, ``[...]`` as a character class."""
    pattern = os.path.normpath(pattern).lstrip("/")
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            regex, i = regex + pattern[i : end + 1], end + 1
        else:
            regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(regex)


def docker_ignores(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (a matched folder takes its contents)."""
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [_docker_pattern(line.strip()) for line in lines if line.strip() and not line.startswith("#")]
    assert not [line for line in lines if line.startswith("!")], "exceptions are not modelled here"
    parts = path.split("/")
    return any(p.fullmatch("/".join(parts[:n])) for p in patterns for n in range(1, len(parts) + 1))


def test_the_image_carries_exactly_what_the_flex_package_carries() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, capture_output=True, check=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    context = sorted(f for f in listed if f and (REPO_ROOT / f).is_file() and not docker_ignores(f))
    assert context == package_files()


@pytest.mark.parametrize("folder", NOT_DEPLOYED)
def test_local_only_folders_stay_out_of_the_image(folder: str) -> None:
    assert docker_ignores(f"{folder}/module.py"), f"{folder}/ would be copied into the image"


def test_azd_deploys_to_the_host_the_infrastructure_creates() -> None:
    """azure.yaml's service conditions and main.bicep's parameters read the same two azd variables, with the
    same defaults: Flex Consumption unless DEPLOY_CONTAINER_APPS=true (and DEPLOY_FLEX=false)."""
    services = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())["services"]
    assert services["api-aca"] == {
        "project": ".",
        "language": "python",
        "host": "containerapp",
        "condition": "${DEPLOY_CONTAINER_APPS=false}",
        "docker": {"path": "Dockerfile", "remoteBuild": True, "buildArgs": ["TORCH_BUILD=${TORCH_BUILD=cuda}"]},
    }
    parameters = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    main = bicep.text("main.bicep")
    for parameter, service, default in (("deployFlex", "api", "true"), ("deployContainerApps", "api-aca", "false")):
        variable = re.fullmatch(r"\$\{(\w+)=(\w+)\}", services[service]["condition"])
        assert variable and variable.group(2) == default
        assert parameters[parameter]["value"] == services[service]["condition"]
        assert f"param {parameter} bool = {default}\n" in main
        assert f"'azd-service-name': '{service}'" in main
    # azd records the image it deployed as SERVICE_<SERVICE NAME>_IMAGE_NAME; a later `azd provision` keeps it.
    image_variable = "SERVICE_" + "api-aca".upper().replace("-", "_") + "_IMAGE_NAME"
    assert parameters["containerImage"]["value"] == f"${{{image_variable}={BASE_IMAGE}}}"
    assert parameters["gpuProfile"]["value"] == "${GPU_PROFILE=Consumption-GPU-NC8as-T4}"
    assert (
        "output AZURE_CONTAINER_REGISTRY_ENDPOINT string = deployContainerApps ? registry.outputs.loginServer : ''"
        in main
    )


def test_the_container_app_is_a_function_app_with_the_flex_app_s_identity_settings() -> None:
    app = bicep.text("container-app.bicep")
    assert bicep.resource_types(app) == ["Microsoft.App/containerApps@2024-10-02-preview"]
    assert "kind: 'functionapp'" in app
    assert "type: 'UserAssigned'" in app and "userAssignedIdentities: { '${identityId}': {} }" in app
    # The image is pulled as the identity (AcrPull in rbac.bicep): no registry password.
    assert "registries: [{ server: registryLoginServer, identity: identityId }]" in app
    assert "passwordSecretRef" not in app
    assert "var settingsEnv = [for setting in items(appSettings): { name: setting.key, value: setting.value }]" in app
    assert "env: concat(settingsEnv, callbackEnv)" in app
    # The one secret, the callback signing key, comes from the Key Vault (test_infra checks its wiring).
    assert "secrets: callbackSecrets" in app
    assert "targetPort: 80" in app and "allowInsecure: false" in app
    main = bicep.text("main.bicep")
    assert main.count("appSettings: appSettings.outputs.settings") == 2  # the Flex app and the container app
    environment = bicep.text("container-apps-environment.bicep")
    assert bicep.resource_types(environment) == [
        "Microsoft.App/managedEnvironments@2024-10-02-preview",
        "Microsoft.Insights/diagnosticSettings@2021-05-01-preview",
    ]
    assert "appLogsConfiguration: { destination: 'azure-monitor' }" in environment  # no workspace shared key
    registry = bicep.text("container-registry.bicep")
    assert "adminUserEnabled: false" in registry and "anonymousPullEnabled: false" in registry


def test_gpu_profiles_and_replica_sizes_agree() -> None:
    main = bicep.text("main.bicep")
    environment = bicep.text("container-apps-environment.bicep")
    allowed = f"@allowed({json.dumps(GPU_PROFILES).replace('"', "'")})"
    assert allowed in main and allowed in environment
    sizes = re.search(r"^var replicaSizes = \{\n(.*?)^\}", main, re.M | re.S)
    assert sizes
    assert [line.split(":")[0].strip().strip("'") for line in sizes.group(1).splitlines()] == GPU_PROFILES
    # A serverless GPU replica gets the whole profile: T4 8 vCPUs / 56 GiB, A100 24 vCPUs / 220 GiB.
    assert "'Consumption-GPU-NC8as-T4': { cpu: '8', memory: '56Gi' }" in sizes.group(1)
    assert "'Consumption-GPU-NC24-A100': { cpu: '24', memory: '220Gi' }" in sizes.group(1)
    # Durable Functions scales Container Apps from zero on the scheduler only (not on Azure Storage).
    assert "minReplicas: durableBackend == 'dts' ? 0 : 1" in main


def _linter(name: str) -> Path:
    path = REPO_ROOT / ".venv-checkov" / "bin" / name
    if not path.exists():
        pytest.skip(f"{name} is not installed: run `make checkov` (make test does)")
    return path


@pytest.mark.slow
def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    hadolint = _linter("hadolint")
    clean = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0 and clean.stdout == "", clean.stdout + clean.stderr
    careless = tmp_path / "Dockerfile"  # the linter does lint: an unpinned base image and package
    careless.write_text("FROM python:latest\nRUN pip install torch\n")
    found = subprocess.run([hadolint, "--no-color", str(careless)], capture_output=True, text=True, timeout=60)
    assert found.returncode != 0 and "DL3007" in found.stdout and "DL3013" in found.stdout, found.stdout


@pytest.mark.slow
def test_checkov_passes_the_dockerfile_with_a_reason_for_each_skip() -> None:
    checkov = _linter("checkov")
    result = subprocess.run(
        [checkov, "--file", str(DOCKERFILE), "--framework", "dockerfile", "--skip-download", "--output", "json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0 and report["summary"]["parsing_errors"] == 0
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]
