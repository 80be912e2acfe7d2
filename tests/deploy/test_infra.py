"""The Bicep in infra/ cross-checked with the app it deploys: the settings the app reads, the identity-only
connections, the roles, the durable backend and host.json. Nothing here needs Azure or the Bicep compiler;
what only a deployment can show (that Azure accepts the templates) is listed in the README."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from sqlalchemy.dialects.mssql.pyodbc import MSDialect_pyodbc
from sqlalchemy.engine import make_url

from settings import Settings, settings_from
from storage.blobs import AzureBlobStore, open_blob_store
from storage.sql_access_token import uses_access_token, without_marker, without_sign_in
from tests.deploy import bicep

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]

# Stand-ins for what Azure fills in at deployment, to evaluate the app settings the way the app will see them.
CLIENT_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
DEPLOYED = {
    "identityClientId": CLIENT_ID,
    "storage.properties.primaryEndpoints.blob": "https://stexample.blob.core.windows.net/",
    "storage.properties.primaryEndpoints.queue": "https://stexample.queue.core.windows.net/",
    "storage.properties.primaryEndpoints.table": "https://stexample.table.core.windows.net/",
    "applicationInsights.properties.ConnectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "schedulerEndpoint": "https://dts-example.westus2.durabletask.io",
    "sqlServerFqdn": "sql-example.database.windows.net",
    "sqlDatabaseName": "classifier",
    "callbackAllowedHosts": "hooks.example.com,partner.example.org",
    "modelWeightsResnet18": "IMAGENET1K_V1",
    "modelWeightsResnet50": "blob:models/resnet50-finetuned.pth#IMAGENET1K_V2",
    "urlAllowedHosts": "images.example.org",
    "callbackSigningSecretUri": "https://kv-example.vault.azure.net/secrets/callback-signing-secret",
}
BACKEND_SETTINGS = {"dts": "durableTaskSchedulerSettings", "azureStorage": "azureStorageBackendSettings"}


def _resolve(value: str) -> str:
    if value.startswith("'"):
        return bicep.interpolate(bicep.string_value(value), DEPLOYED)
    assert value in DEPLOYED, f"app setting value {value!r} is neither a string nor a known expression"
    return DEPLOYED[value]


def shared_app_settings(backend: str = "dts") -> dict[str, str]:
    """The settings both hosting options get (app-settings.bicep) for a durable backend (``dts`` or
    ``azureStorage``), as the app reads them."""
    source = bicep.text("app-settings.bicep")
    assert (
        "output settings object = union(hostStorageSettings, monitoringSettings, durableBackendSettings, appSettings)"
        in source
    )
    assert (
        "var durableBackendSettings = empty(schedulerEndpoint) ? azureStorageBackendSettings "
        ": durableTaskSchedulerSettings" in source
    )
    settings: dict[str, str] = {}
    for group in ("hostStorageSettings", "monitoringSettings", BACKEND_SETTINGS[backend], "appSettings"):
        for key, value in bicep.object_var(source, group).items():
            assert key not in settings, f"{key} is set twice"
            settings[key] = _resolve(value)
    return settings


def azure_app_settings(backend: str = "dts", callback_secret: bool = True) -> dict[str, str]:
    """The Flex Consumption function app's settings: the shared ones, what its remote build reads and, when a
    callback signing secret was given (``callback_secret``), its Key Vault reference."""
    source = bicep.text("function-app.bicep")
    assert "properties: union(appSettings, remoteBuildSettings, keyVaultReferenceSettings)" in source
    assert "var keyVaultReferenceSettings = empty(callbackSigningSecretUri) ? {} : {" in source
    assert "appSettings: appSettings.outputs.settings" in bicep.text("main.bicep")
    settings = shared_app_settings(backend)
    groups = ["remoteBuildSettings", *(["keyVaultReferenceSettings"] if callback_secret else [])]
    for group in groups:
        for key, value in bicep.object_var(source, group).items():
            assert key not in settings, f"{key} is set twice"
            settings[key] = _resolve(value)
    return settings


class RecordingEnv(dict[str, str]):
    """An environment that remembers every variable read from it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)


def settings_read_by_app() -> set[str]:
    env = RecordingEnv({})
    settings_from(env)
    return env.read


def test_azure_yaml_deploys_this_folder_as_a_python_function_app() -> None:
    config = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())
    assert config["services"]["api"] == {
        "project": ".",
        "language": "python",
        "host": "function",
        "condition": "${DEPLOY_FLEX=true}",  # the default host; tests/deploy/test_container.py checks the switch
    }
    # azd finds the deployed app by this tag.
    assert "'azd-service-name': 'api'" in bicep.text("main.bicep")


def test_every_required_parameter_is_supplied_by_azd() -> None:
    main = bicep.text("main.bicep")
    required = set(re.findall(r"^param (\w+) \w+$", main, re.M))
    supplied = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    assert required == {"environmentName", "location"}
    assert required <= set(supplied)
    declared = set(re.findall(r"^param (\w+) ", main, re.M))
    assert set(supplied) <= declared, "main.parameters.json names a parameter main.bicep does not have"


def test_every_module_call_matches_its_module() -> None:
    """What the Bicep compiler would say first (it cannot run here): main.bicep passes each module every
    parameter without a default and no unknown one, and reads only outputs the module declares."""
    main = bicep.text("main.bicep")
    modules = re.findall(r"^module (\w+) '([^']+)' = [^\n]*\{\n(.*?)^\}", main, re.M | re.S)
    assert len(modules) >= 7
    for symbol, path, body in modules:
        source = (bicep.INFRA / path).read_text()
        declared = dict(re.findall(r"^param (\w+) [^\n]*?( = .*)?$", source, re.M))
        params = re.search(r"^  params: \{\n(.*?)^  \}", body, re.M | re.S)
        assert params, symbol
        passed = {line.split(":")[0].strip() for line in params.group(1).splitlines() if ":" in line}
        assert passed <= set(declared), f"{symbol}: unknown parameters {passed - set(declared)}"
        assert {name for name, default in declared.items() if not default} <= passed, f"{symbol}: missing parameters"
        outputs = set(re.findall(r"^output (\w+) ", source, re.M))
        read = set(re.findall(rf"\b{symbol}\.outputs\.(\w+)", main))
        assert read <= outputs, f"{symbol}: no output {read - outputs} in {path}"


def test_flex_consumption_python_313_on_4_gb_instances() -> None:
    app = bicep.text("function-app.bicep")
    assert "tier: 'FlexConsumption'" in app and "name: 'FC1'" in app
    assert re.search(r"runtime: \{\s*name: 'python'\s*version: '3.13'\s*\}", app)
    assert re.search(r"^param instanceMemoryMB int = 4096$", bicep.text("main.bicep"), re.M)
    # Flex Consumption refuses these settings: the runtime comes from functionAppConfig.
    settings = azure_app_settings()
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"} & set(settings)


def test_host_storage_is_reached_with_the_identity() -> None:
    settings = azure_app_settings()
    assert "AzureWebJobsStorage" not in settings  # a connection string would carry the account key
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == CLIENT_ID
    for service in ("blob", "queue", "table"):
        uri = settings[f"AzureWebJobsStorage__{service}ServiceUri"]
        assert uri == f"https://stexample.{service}.core.windows.net/"


def test_application_insights_takes_entra_authenticated_telemetry_only() -> None:
    settings = azure_app_settings()
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"ClientId={CLIENT_ID};Authorization=AAD"
    assert "DisableLocalAuth: true" in bicep.text("monitoring.bicep")


def test_no_secret_anywhere_in_the_infrastructure() -> None:
    for path in (REPO_ROOT / "infra").rglob("*"):
        if path.is_file():
            source = path.read_text()
            for secret in (
                "AccountKey",
                "listKeys(",
                "administratorLoginPassword",
                "Password=",
                "SharedAccessSignature",
            ):
                assert secret not in source, f"{path.name} mentions {secret}"
            assert not re.search(r"^output .*(key|secret|password)", source, re.M | re.I), path.name


def test_storage_account_refuses_shared_keys_and_public_blobs() -> None:
    storage = bicep.text("storage.bicep")
    assert "allowSharedKeyAccess: false" in storage
    assert "allowBlobPublicAccess: false" in storage
    assert "minimumTlsVersion: 'TLS1_2'" in storage


def test_the_app_containers_are_created_under_the_names_the_app_uses() -> None:
    defaults = settings_from({})
    match = re.search(r"containers: \[deploymentContainerName, '([^']+)', '([^']+)'\]", bicep.text("main.bicep"))
    assert match, "main.bicep does not pass the app's containers to the storage module"
    assert set(match.groups()) == {defaults.upload_container, defaults.tensor_container}


def test_durable_task_scheduler_with_its_task_hub_and_identity_connection_string() -> None:
    dts = bicep.text("durable-task-scheduler.bicep")
    assert bicep.resource_types(dts) == [
        "Microsoft.DurableTask/schedulers@2025-11-01",
        "Microsoft.DurableTask/schedulers/taskHubs@2025-11-01",
    ]
    assert "sku: { name: 'Consumption' }" in dts
    settings = azure_app_settings()
    assert settings["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"] == (
        f"Endpoint=https://dts-example.westus2.durabletask.io;Authentication=ManagedIdentity;ClientID={CLIENT_ID}"
    )


def test_host_json_runs_on_the_scheduler_that_the_infrastructure_creates() -> None:
    """The package's host.json names the scheduler (the scale controller reads host.json from the package, and
    app-setting overrides of it are not seen there: azure-functions-durable-extension#2622); the app settings
    supply its connection, and its task hub is the one host.json names."""
    durable = json.loads((REPO_ROOT / "host.json").read_text())["extensions"]["durableTask"]
    assert durable["storageProvider"] == {
        "type": "azureManaged",
        "connectionStringName": "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
    }
    assert "DURABLE_TASK_SCHEDULER_CONNECTION_STRING" in azure_app_settings("dts")
    assert not [name for name in azure_app_settings("dts") if name.startswith("AzureFunctionsJobHost__")]
    task_hub = re.search(r"^param taskHubName string = '([^']+)'$", bicep.text("main.bicep"), re.M)
    assert task_hub and task_hub.group(1) == durable["hubName"]


OVERRIDE = "AzureFunctionsJobHost__extensions__durableTask__storageProvider__"


def test_the_azure_storage_backend_overrides_host_json_as_core_tools_does() -> None:
    """Without a scheduler, app settings switch host.json back to the storage account: the same two overrides
    that local.settings.json.example gives Core Tools with Azurite."""
    settings = azure_app_settings("azureStorage")
    assert "DURABLE_TASK_SCHEDULER_CONNECTION_STRING" not in settings
    overrides = {name: value for name, value in settings.items() if name.startswith(OVERRIDE)}
    assert overrides == {
        OVERRIDE + "type": "AzureStorage",
        OVERRIDE + "connectionStringName": "AzureWebJobsStorage",
    }
    local = json.loads((REPO_ROOT / "local.settings.json.example").read_text())["Values"]
    assert {name: value for name, value in local.items() if name.startswith(OVERRIDE)} == overrides
    main = bicep.text("main.bicep")
    assert "@allowed(['dts', 'azureStorage'])\nparam durableBackend string = 'dts'" in main
    assert "schedulerEndpoint: durableBackend == 'dts' ? scheduler.outputs.endpoint : ''" in main
    assert "module scheduler 'modules/durable-task-scheduler.bicep' = if (durableBackend == 'dts')" in main


ROLE_IDS = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "durableTaskDataContributor": "0ad04412-c4d5-4796-b79c-f76d14c8d402",
    "acrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
}


def _role_assignments(source: str) -> Iterator[tuple[str, str, str]]:
    """(scope, role expression, principal) of every role assignment in ``source``."""
    for block in re.findall(
        r"^resource \w+ 'Microsoft.Authorization/roleAssignments@[^']+' = (.*?)^\}", source, re.M | re.S
    ):
        scope = re.search(r"scope: (\w+)", block)
        role = re.search(r"roleDefinitions', (\w+(?:\.\w+)?)\)", block)
        principal = re.search(r"principalId: (\w+)", block)
        assert scope and role and principal, block
        yield scope.group(1), role.group(1), principal.group(1)


def test_the_identity_has_each_data_role_on_its_resource() -> None:
    rbac = bicep.text("rbac.bicep")
    declared = dict(re.findall(r"^  (\w+): '([0-9a-f-]{36})'", rbac, re.M))
    assert declared == ROLE_IDS
    assert (
        "var storageRoles = [roles.storageBlobDataOwner, roles.storageQueueDataContributor, "
        "roles.storageTableDataContributor]" in rbac
    )
    assignments = set(_role_assignments(rbac))
    assert assignments == {
        ("storage", "role", "identityPrincipalId"),  # for role in storageRoles
        ("applicationInsights", "roles.monitoringMetricsPublisher", "identityPrincipalId"),
        ("scheduler", "roles.durableTaskDataContributor", "identityPrincipalId"),
        (
            "scheduler",
            "roles.durableTaskDataContributor",
            "userPrincipalId",
        ),  # the dashboard, for the deployer
        ("registry", "roles.acrPull", "identityPrincipalId"),  # the Container Apps option's image
        ("vault", "roles.keyVaultSecretsUser", "identityPrincipalId"),  # Key Vault references
    }
    assert "[for role in storageRoles: {" in rbac


def test_the_deployer_s_principal_type_comes_from_azd_so_a_pipeline_can_deploy() -> None:
    """ARM refuses a role assignment whose principalType does not match the principal (UnmatchedPrincipalType):
    a service principal running azd in a pipeline sets AZURE_PRINCIPAL_TYPE=ServicePrincipal."""
    supplied = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    assert supplied["principalType"] == {"value": "${AZURE_PRINCIPAL_TYPE=User}"}
    main = bicep.text("main.bicep")
    assert "param principalType string = 'User'" in main and "userPrincipalType: principalType" in main
    rbac = bicep.text("rbac.bicep")
    assert "principalType: userPrincipalType" in rbac and "principalType: 'User'" not in rbac


def test_sql_accepts_entra_identities_only_with_the_app_identity_as_admin() -> None:
    sql = bicep.text("sql.bicep")
    assert "azureADOnlyAuthentication: true" in sql
    assert "sid: adminIdentityPrincipalId" in sql and "principalType: 'Application'" in sql
    main = bicep.text("main.bicep")
    assert "adminIdentityPrincipalId: identity.outputs.principalId" in main


def test_sql_connection_string_signs_in_with_an_access_token_without_a_password() -> None:
    """The access-token path (storage/sql_access_token.py): DefaultAzureCredential with AZURE_CLIENT_ID, the
    same identity as every other connection; the ODBC string pyodbc gets carries no sign-in keyword."""
    url = make_url(azure_app_settings()["SQL_CONNECTION_STRING"])
    assert url.get_backend_name() == "mssql" and url.username is None and url.password is None
    assert uses_access_token(url)
    (odbc,), _ = MSDialect_pyodbc().create_connect_args(without_marker(url))
    parts = dict(part.split("=", 1) for part in without_sign_in(odbc).split(";"))
    assert parts == {
        "DRIVER": "{ODBC Driver 18 for SQL Server}",
        "Server": "sql-example.database.windows.net,1433",
        "Database": "classifier",
        "Encrypt": "yes",
    }
    assert azure_app_settings()["AZURE_CLIENT_ID"] == CLIENT_ID


# Settings whose local default would be wrong on Azure, and why; each must be set by the infrastructure.
MUST_DIFFER_ON_AZURE = {
    "BLOB_ACCOUNT_URL": "the default is a folder on one instance's disk; instances share nothing",
    "SQL_CONNECTION_STRING": "the default is SQLite on one instance's disk",
    "CHECKPOINT_CACHE_DIR": "the default is relative to the app folder, which is read-only on Flex Consumption",
}
# Settings the infrastructure sets that settings.py does not read, and who reads them.
READ_ELSEWHERE = {
    "AZURE_CLIENT_ID": "DefaultAzureCredential (azure-identity): which managed identity to sign in as",
    "TORCH_HOME": "torch.hub: where downloaded weights go (the home folder is not writable)",
    "PIP_EXTRA_INDEX_URL": "pip during the remote build: torch from PyTorch's CPU wheel index",
    "PYTHON_THREADPOOL_THREAD_COUNT": "Azure's Python worker: threads that run sync functions such as activities",
}


def test_every_setting_that_must_differ_on_azure_is_set() -> None:
    read = settings_read_by_app()
    settings = azure_app_settings()
    for name in MUST_DIFFER_ON_AZURE:
        assert name in read, f"{name} is no longer read by settings.py"
        assert settings.get(name), f"{name} is not set by infra/modules/app-settings.bicep"


def test_every_activity_host_json_allows_at_once_gets_a_thread() -> None:
    """Activities waiting in the dynamic batcher hold a thread each: with fewer threads than activities
    allowed at once, preprocessing and persisting queue behind them (issue 10's 1-image load)."""
    durable = json.loads((REPO_ROOT / "host.json").read_text())["extensions"]["durableTask"]
    allowed = int(durable["maxConcurrentActivityFunctions"])
    example = json.loads((REPO_ROOT / "local.settings.json.example").read_text())["Values"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    make_run = re.search(r"^run: export PYTHON_THREADPOOL_THREAD_COUNT \?= (\d+)$", makefile, re.MULTILINE)
    assert make_run, "make run does not set PYTHON_THREADPOOL_THREAD_COUNT"
    for where, threads in (
        ("infra/modules/app-settings.bicep", azure_app_settings()["PYTHON_THREADPOOL_THREAD_COUNT"]),
        ("local.settings.json.example", example["PYTHON_THREADPOOL_THREAD_COUNT"]),
        ("Makefile (make run)", make_run.group(1)),
    ):
        assert int(threads) >= allowed, f"{where}: {threads} threads for {allowed} concurrent activities"


def test_app_settings_in_the_infrastructure_are_read_by_someone() -> None:
    """A typo in a setting name would silently leave the app on its local default."""
    read = settings_read_by_app()
    platform = re.compile(
        r"^(AzureWebJobsStorage__|AzureFunctionsJobHost__|APPLICATIONINSIGHTS_|DURABLE_TASK_SCHEDULER_)"
    )
    own = {**bicep.object_var(bicep.text("app-settings.bicep"), "appSettings"),
           **bicep.object_var(bicep.text("function-app.bicep"), "remoteBuildSettings"),
           **bicep.object_var(bicep.text("function-app.bicep"), "keyVaultReferenceSettings")}  # fmt: skip
    for name in own:
        assert name in read or name in READ_ELSEWHERE, f"{name} is set on Azure but nothing reads it"
    for backend in BACKEND_SETTINGS:
        for name in azure_app_settings(backend):
            assert name in read or name in READ_ELSEWHERE or platform.match(name), name


def test_on_azure_the_app_keeps_nothing_on_the_instance_disk() -> None:
    """Every path-like setting, evaluated with the deployed app settings, leaves the read-only app folder;
    blobs go to the storage account with the identity, results to Azure SQL."""
    settings = settings_from(azure_app_settings())
    for field in fields(Settings):
        value = getattr(settings, field.name)
        # blob_local_root is only used without a connection string or account URL (the store below is Azure).
        if isinstance(value, str) and field.name != "blob_local_root":
            assert ".localdata" not in value, f"{field.name}={value!r} points into the app folder on Azure"
    assert settings.blob_connection_string == ""
    store = open_blob_store(
        settings.blob_connection_string, settings.blob_local_root, account_url=settings.blob_account_url
    )
    assert isinstance(store, AzureBlobStore)
    assert store.account_url == "https://stexample.blob.core.windows.net/"


@pytest.mark.parametrize(
    "name", [*sorted(MUST_DIFFER_ON_AZURE), "TORCH_HOME", "CALLBACK_ALLOWED_HOSTS", "CALLBACK_SIGNING_SECRET"]
)
def test_settings_set_on_azure_are_in_the_readme_table(name: str) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert re.search(rf"^\| `{name}` \|", readme, re.M), f"{name} is missing from the README's configuration table"


@pytest.mark.parametrize(
    ("parameter", "variable", "default"),
    [
        ("modelWeightsResnet18", "MODEL_WEIGHTS_RESNET18", "IMAGENET1K_V1"),
        ("modelWeightsResnet50", "MODEL_WEIGHTS_RESNET50", "IMAGENET1K_V2"),
        ("urlAllowedHosts", "URL_ALLOWED_HOSTS", ""),
    ],
)
def test_weights_and_url_hosts_are_azd_parameters_so_a_provision_keeps_them(
    parameter: str, variable: str, default: str
) -> None:
    """A provision replaces a function app's whole collection of settings: a value set by hand in the portal
    would be lost, so what a deployment chooses comes from the azd environment."""
    main = bicep.text("main.bicep")
    assert re.search(rf"^param {parameter} string = '{default}'$", main, re.M)
    assert f"{parameter}: {parameter}" in main
    supplied = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    expected = f"${{{variable}={default}}}" if default else f"${{{variable}}}"
    assert supplied[parameter] == {"value": expected}
    assert re.search(rf"^param {parameter} string = '{default}'$", bicep.text("app-settings.bicep"), re.M)
    for settings in (shared_app_settings(), azure_app_settings()):
        assert settings[variable] == DEPLOYED[parameter]
    parsed = settings_from(azure_app_settings())
    assert parsed.weights_spec("resnet50") == "blob:models/resnet50-finetuned.pth#IMAGENET1K_V2"
    assert parsed.url_allowed_hosts == frozenset({"images.example.org"})


# Callbacks (README, "Driving it with messages"): CALLBACK_ALLOWED_HOSTS is a plain azd parameter;
# CALLBACK_SIGNING_SECRET a secure one, kept in a Key Vault and read by the app through a Key Vault reference.
VAULT_URI = "https://kv-example.vault.azure.net/"
SECRET_PARAMETER = "callbackSigningSecret"


def _secret_parameter_uses(source: str) -> list[str]:
    """Every code line of ``source`` (no comment, no decorator) that names the secure parameter, stripped."""
    lines = (line.strip() for line in source.splitlines())
    return [line for line in lines if _names_secret(line) and not line.startswith(("//", "@"))]


def _names_secret(text: str) -> int:
    return len(re.findall(rf"\b{SECRET_PARAMETER}\b", text))


def test_callback_hosts_are_an_optional_azd_parameter_passed_to_the_app() -> None:
    main = bicep.text("main.bicep")
    assert re.search(r"^param callbackAllowedHosts string = ''$", main, re.M)
    supplied = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    assert supplied["callbackAllowedHosts"] == {"value": "${CALLBACK_ALLOWED_HOSTS}"}
    assert "callbackAllowedHosts: callbackAllowedHosts" in main
    assert re.search(r"^param callbackAllowedHosts string = ''$", bicep.text("app-settings.bicep"), re.M)
    for settings in (shared_app_settings(), azure_app_settings()):  # both hosting options
        assert settings["CALLBACK_ALLOWED_HOSTS"] == "hooks.example.com,partner.example.org"
    parsed = settings_from(azure_app_settings())
    assert parsed.callback_allowed_hosts == frozenset({"hooks.example.com", "partner.example.org"})


def test_the_signing_secret_is_a_secure_parameter_never_echoed() -> None:
    """The key goes from azd to the vault and nowhere else: @secure in main.bicep and in the module that
    receives it, read only to decide whether there is one and to set the secret's value, in no output, no app
    setting and no other module."""
    supplied = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    assert supplied[SECRET_PARAMETER] == {"value": "${CALLBACK_SIGNING_SECRET}"}
    main, vault = bicep.text("main.bicep"), bicep.text("key-vault.bicep")
    for source, default in ((main, " = ''"), (vault, "")):  # the module deployed only with a key requires it
        assert re.search(
            rf"^@secure\(\)\n(@description\([^\n]*\)\n)?param {SECRET_PARAMETER} string{default}$", source, re.M
        )
    condition = f"!empty({SECRET_PARAMETER})"
    main_uses = _secret_parameter_uses(main)
    assert main_uses[0] == f"param {SECRET_PARAMETER} string = ''"
    for line in main_uses[1:]:
        # passed to the Key Vault module only; elsewhere only tested for emptiness
        passing = line == f"{SECRET_PARAMETER}: {SECRET_PARAMETER}"
        assert _names_secret(line) == (2 if passing else line.count(condition)), line
    passed = re.search(r"^module keyVault 'modules/key-vault.bicep' = [^\n]*\{\n(.*?)^\}", main, re.M | re.S)
    assert passed and f"    {SECRET_PARAMETER}: {SECRET_PARAMETER}\n" in passed.group(1)
    assert main.count(f"{SECRET_PARAMETER}: {SECRET_PARAMETER}") == 1
    assert _secret_parameter_uses(vault) == [f"param {SECRET_PARAMETER} string", f"value: {SECRET_PARAMETER}"]
    for path in (REPO_ROOT / "infra").rglob("*.bicep"):
        source = path.read_text()
        for output in re.findall(r"^output .*$", source, re.M):
            assert not _names_secret(output) and "callbackSigning." not in output, f"{path.name}: {output}"
        if path.name not in ("main.bicep", "key-vault.bicep"):
            assert not _names_secret(source), f"{path.name} receives the signing secret"


def test_the_signing_secret_is_a_key_vault_reference_in_the_app_settings() -> None:
    main, vault, app = bicep.text("main.bicep"), bicep.text("key-vault.bicep"), bicep.text("function-app.bicep")
    assert bicep.resource_types(vault) == [
        "Microsoft.KeyVault/vaults@2023-07-01",
        "Microsoft.KeyVault/vaults/secrets@2023-07-01",
    ]
    # The vault and the secret exist only when a key was given (the module's condition); the setting only then.
    assert "module keyVault 'modules/key-vault.bicep' = if (!empty(callbackSigningSecret)) {" in main
    secret = "resource callbackSigning 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {\n  parent: vault\n"
    assert secret + "  name: callbackSigningSecretName\n" in vault
    # The reference names the secret the module creates: the vault's URI and the one secret name main.bicep owns.
    name = re.search(r"^var callbackSigningSecretName = '([a-z0-9-]+)'$", main, re.M)
    assert name and "    callbackSigningSecretName: callbackSigningSecretName\n" in main
    assert "output uri string = vault.properties.vaultUri" in vault
    uri = re.search(r"^var callbackSigningSecretUri = !empty\(callbackSigningSecret\) \? '([^']+)' : ''$", main, re.M)
    assert uri, "main.bicep builds no URI of the secret"
    # to both hosting options: the Flex Consumption app and the container app
    for module in ("api 'modules/function-app.bicep'", "apiContainerApp 'modules/container-app.bicep'"):
        body = re.search(rf"^module {module} = [^\n]*\{{\n(.*?)^\}}", main, re.M | re.S)
        assert body and "    callbackSigningSecretUri: callbackSigningSecretUri\n" in body.group(1), module
    resolved = bicep.interpolate(
        uri.group(1), {"keyVault.outputs.uri": VAULT_URI, "callbackSigningSecretName": name.group(1)}
    )
    assert resolved == f"{VAULT_URI}secrets/{name.group(1)}" == DEPLOYED["callbackSigningSecretUri"]
    # Versionless: the app follows the latest version of the secret.
    assert re.fullmatch(r"https://[a-z0-9-]+\.vault\.azure\.net/secrets/[a-z0-9-]+", resolved)
    assert re.search(r"^param callbackSigningSecretUri string = ''$", app, re.M)
    settings = azure_app_settings()
    assert settings["CALLBACK_SIGNING_SECRET"] == f"@Microsoft.KeyVault(SecretUri={resolved})"
    assert "CALLBACK_SIGNING_SECRET" not in azure_app_settings(callback_secret=False)
    # Not in the shared settings: Container Apps would pass the reference text to the app as the key.
    assert "CALLBACK_SIGNING_SECRET" not in shared_app_settings()
    # The platform puts the secret's value there; a reference it could not resolve stays text, which the app
    # treats as unset (signing with text that names the vault would let anyone forge signatures).
    assert settings_from(settings).callback_signing_secret == ""
    assert settings_from({**settings, "CALLBACK_SIGNING_SECRET": "k3y"}).callback_signing_secret == "k3y"


def test_the_container_app_reads_the_signing_secret_from_the_vault_as_a_container_app_secret() -> None:
    """Container Apps resolves no Key Vault reference text in an environment variable: the key is a container
    app secret with the vault's URI, read as the identity that has Key Vault Secrets User, and the variable
    CALLBACK_SIGNING_SECRET refers to that secret by name; with no key, neither exists."""
    app = bicep.text("container-app.bicep")
    assert re.search(r"^param callbackSigningSecretUri string = ''$", app, re.M)
    element = r" = empty\(callbackSigningSecretUri\) \? \[\] : \[\n  (\{.*\})\n\]$"
    secrets = re.search(r"^var callbackSecrets" + element, app, re.M)
    env = re.search(r"^var callbackEnv" + element, app, re.M)
    assert secrets and env
    secret = dict(re.findall(r"(\w+): ([^,}\s]+)", secrets.group(1)))
    variable = dict(re.findall(r"(\w+): ([^,}\s]+)", env.group(1)))
    assert secret == {
        "name": secret["name"],
        "keyVaultUrl": "callbackSigningSecretUri",
        "identity": "identityId",  # the user-assigned identity the role is given to (rbac.bicep)
    }
    assert variable == {"name": "'CALLBACK_SIGNING_SECRET'", "secretRef": secret["name"]}
    assert "secrets: callbackSecrets" in app and "env: concat(settingsEnv, callbackEnv)" in app
    # that identity is the app's own, the one given Key Vault Secrets User (test_the_identity_has_secrets_user...)
    module = r"^module apiContainerApp 'modules/container-app.bicep' = [^\n]*\{\n(.*?)^\}"
    container_app = re.search(module, bicep.text("main.bicep"), re.M | re.S)
    assert container_app and "    identityId: identity.outputs.id\n" in container_app.group(1)


def test_the_key_vault_authorizes_with_rbac_and_keeps_deleted_secrets() -> None:
    vault = bicep.text("key-vault.bicep")
    properties = re.search(r"^resource vault 'Microsoft.KeyVault/vaults@[^']+' = \{\n(.*?)^\}", vault, re.M | re.S)
    assert properties
    body = properties.group(1)
    assert "enableRbacAuthorization: true" in body
    assert "accessPolicies: []" in body and "objectId" not in vault and "accessPolicies'" not in vault
    assert "enableSoftDelete: true" in body and "enablePurgeProtection: true" in body
    retention = re.search(r"softDeleteRetentionInDays: (\d+)", body)
    assert retention and 7 <= int(retention.group(1)) <= 90
    assert "tenantId: tenant().tenantId" in body
    # Public endpoint, Entra-only, as the storage account and Azure SQL (no virtual network in this template).
    assert "publicNetworkAccess: 'Enabled'" in body
    assert "publicNetworkAccess: 'Enabled'" in bicep.text("storage.bicep")


def test_the_identity_has_secrets_user_on_the_vault() -> None:
    rbac, main = bicep.text("rbac.bicep"), bicep.text("main.bicep")
    assert ("vault", "roles.keyVaultSecretsUser", "identityPrincipalId") in set(_role_assignments(rbac))
    assert re.search(
        r"^resource vault 'Microsoft.KeyVault/vaults@[^']+' existing = if \(!empty\(keyVaultName\)\) \{$", rbac, re.M
    )
    assert "keyVaultName: !empty(callbackSigningSecret) ? keyVault.outputs.name : ''" in main
    assert "identityPrincipalId: identity.outputs.principalId" in main
    # The role is in place before either hosting option resolves its reference or secret.
    for module in ("api 'modules/function-app.bicep'", "apiContainerApp 'modules/container-app.bicep'"):
        body = re.search(rf"^module {module} = [^\n]*\{{\n(.*?)^\}}", main, re.M | re.S)
        assert body and "  dependsOn: [rbac]" in body.group(1), module


def test_key_vault_references_are_resolved_as_the_user_assigned_identity() -> None:
    """Without keyVaultReferenceIdentity the platform would use a system-assigned identity, which the app
    does not have: every reference would stay unresolved."""
    app = bicep.text("function-app.bicep")
    site = re.search(r"^resource functionApp 'Microsoft.Web/sites@[^']+' = \{\n(.*?)^\}", app, re.M | re.S)
    assert site
    body = site.group(1)
    assert "    type: 'UserAssigned'\n    userAssignedIdentities: { '${identityId}': {} }\n" in body
    assert re.search(r"^  properties: \{\n(?:    .*\n)*?    keyVaultReferenceIdentity: identityId\n", body, re.M)
    assert "identityId: identity.outputs.id" in bicep.text("main.bicep")


def test_the_readme_says_how_to_set_the_callback_settings_with_azd() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for name in ("CALLBACK_ALLOWED_HOSTS", "CALLBACK_SIGNING_SECRET"):
        row = re.search(rf"^\| `{name}` \|.*$", readme, re.M)
        assert row and f"azd env set {name}" in row.group(0), name
