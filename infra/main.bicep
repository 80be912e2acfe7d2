// The whole system for `azd up`: a Flex Consumption function app (Python 3.13) with a user-assigned identity,
// the Durable Task Scheduler (or Azure Storage) as the durable backend, a storage account for the host and the
// app's images/tensors, Azure SQL with Entra-only authentication, and Application Insights. For GPUs or more
// memory, deployContainerApps runs the same app as Azure Functions on Azure Container Apps instead (an image
// built from the Dockerfile, a container registry, a Container Apps environment with a GPU workload profile).
// Every connection is identity-based: no account key, password or instrumentation key is set anywhere. The one
// secret of the app, the optional HMAC key of callback bodies, is kept in a Key Vault and referenced from the app
// settings, or from a Container Apps secret (only when callbackSigningSecret is given).
//
// The modules are declared as plain resources with the settings of the Azure Verified Modules the azd
// Functions quickstarts use, so that checkov and tests/deploy can read every property offline.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; a hash of it names the resources.')
param environmentName string

@minLength(1)
@description('Region of every resource (one where Flex Consumption and the Durable Task Scheduler exist).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the deploying user: gets the Durable Task dashboard role. Empty: none.')
param principalId string = ''

@description('What principalId is: User, or ServicePrincipal when azd runs in a pipeline (AZURE_PRINCIPAL_TYPE).')
@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

@description('Durable Functions backend: the Durable Task Scheduler (default) or the storage account.')
@allowed(['dts', 'azureStorage'])
param durableBackend string = 'dts'

@description('Host the app on Flex Consumption (azure.yaml deploys service api where this is true).')
param deployFlex bool = true

@description('Host the app on Azure Functions on Azure Container Apps (azure.yaml: service api-aca). Set one of the two.')
param deployContainerApps bool = false

@description('Container Apps option: serverless GPU workload profile of the app, or none (CPU, 4 vCPUs / 8 GiB).')
@allowed(['none', 'Consumption-GPU-NC8as-T4', 'Consumption-GPU-NC24-A100'])
param gpuProfile string = 'Consumption-GPU-NC8as-T4'

@description('Container Apps option: the image to run; azd sets SERVICE_API_ACA_IMAGE_NAME once it has deployed one.')
param containerImage string = 'mcr.microsoft.com/azure-functions/python:4-python3.13'

@description('Flex Consumption instance size: 4096 MB has 2 cores, 2048 MB has 1.')
@allowed([2048, 4096])
param instanceMemoryMB int = 4096

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Task hub name: the one host.json names (extensions.durableTask.hubName).')
param taskHubName string = 'ClassifierHub'

@description('CALLBACK_ALLOWED_HOSTS: comma-separated hosts reply_to callback URLs may point at. Empty: callbacks refused.')
param callbackAllowedHosts string = ''

@description('MODEL_WEIGHTS_RESNET18: torchvision weights name, blob:container/checkpoint.pth[#BASE] or random[:SEED].')
param modelWeightsResnet18 string = 'IMAGENET1K_V1'

@description('MODEL_WEIGHTS_RESNET50: as MODEL_WEIGHTS_RESNET18, for ResNet50.')
param modelWeightsResnet50 string = 'IMAGENET1K_V2'

@description('URL_ALLOWED_HOSTS: comma-separated hosts {"url": ...} images may come from. Empty: URL images refused.')
param urlAllowedHosts string = ''

@secure()
@description('CALLBACK_SIGNING_SECRET, the HMAC-SHA256 key of callback bodies: stored in a Key Vault (created for it), the Flex Consumption app reads it through a Key Vault reference, the Container Apps option through a Key Vault secret. Empty: no vault, callbacks refused.')
param callbackSigningSecret string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = 'func-${resourceToken}'
// Flex Consumption deploys from a package in this container.
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var callbackSigningSecretName = 'callback-signing-secret'
// What one replica of the Container Apps option gets on each workload profile (the whole profile's share).
var replicaSizes = {
  none: { cpu: '4', memory: '8Gi' }
  'Consumption-GPU-NC8as-T4': { cpu: '8', memory: '56Gi' }
  'Consumption-GPU-NC24-A100': { cpu: '24', memory: '220Gi' }
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    containers: [deploymentContainerName, 'uploads', 'tensors']
  }
}

module scheduler 'modules/durable-task-scheduler.bicep' = if (durableBackend == 'dts') {
  name: 'durable-task-scheduler'
  scope: rg
  params: {
    name: 'dts-${resourceToken}'
    taskHubName: taskHubName
    location: location
    tags: tags
  }
}

module sql 'modules/sql.bicep' = {
  name: 'sql'
  scope: rg
  params: {
    serverName: 'sql-${resourceToken}'
    databaseName: 'classifier'
    location: location
    tags: tags
    adminIdentityName: identity.outputs.name
    adminIdentityPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'modules/key-vault.bicep' = if (!empty(callbackSigningSecret)) {
  name: 'key-vault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    callbackSigningSecretName: callbackSigningSecretName
    callbackSigningSecret: callbackSigningSecret
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    schedulerName: durableBackend == 'dts' ? scheduler.outputs.name : ''
    registryName: deployContainerApps ? registry.outputs.name : ''
    keyVaultName: !empty(callbackSigningSecret) ? keyVault.outputs.name : ''
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module appSettings 'modules/app-settings.bicep' = {
  name: 'app-settings'
  scope: rg
  params: {
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    schedulerEndpoint: durableBackend == 'dts' ? scheduler.outputs.endpoint : ''
    sqlServerFqdn: sql.outputs.fullyQualifiedDomainName
    sqlDatabaseName: sql.outputs.databaseName
    callbackAllowedHosts: callbackAllowedHosts
    modelWeightsResnet18: modelWeightsResnet18
    modelWeightsResnet50: modelWeightsResnet50
    urlAllowedHosts: urlAllowedHosts
  }
}

// The signing secret's URI has no version: the app follows the latest version of the secret.
var callbackSigningSecretUri = !empty(callbackSigningSecret) ? '${keyVault.outputs.uri}secrets/${callbackSigningSecretName}' : ''

module api 'modules/function-app.bicep' = if (deployFlex) {
  name: 'api'
  scope: rg
  dependsOn: [rbac]
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    identityId: identity.outputs.id
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: appSettings.outputs.settings
    callbackSigningSecretUri: callbackSigningSecretUri
  }
}

module registry 'modules/container-registry.bicep' = if (deployContainerApps) {
  name: 'container-registry'
  scope: rg
  params: {
    name: 'cr${resourceToken}'
    location: location
    tags: tags
  }
}

module containerAppsEnvironment 'modules/container-apps-environment.bicep' = if (deployContainerApps) {
  name: 'container-apps-environment'
  scope: rg
  params: {
    name: 'cae-${resourceToken}'
    location: location
    tags: tags
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    gpuProfile: gpuProfile
  }
}

module apiContainerApp 'modules/container-app.bicep' = if (deployContainerApps) {
  name: 'api-aca'
  scope: rg
  dependsOn: [rbac] // AcrPull before the first pull, Key Vault Secrets User before the secret is read
  params: {
    name: 'ca-${resourceToken}'
    location: location
    tags: union(tags, { 'azd-service-name': 'api-aca' })
    identityId: identity.outputs.id
    environmentId: containerAppsEnvironment.outputs.id
    workloadProfileName: containerAppsEnvironment.outputs.workloadProfileName
    registryLoginServer: registry.outputs.loginServer
    image: containerImage
    appSettings: appSettings.outputs.settings
    cpu: replicaSizes[gpuProfile].cpu
    memory: replicaSizes[gpuProfile].memory
    minReplicas: durableBackend == 'dts' ? 0 : 1
    callbackSigningSecretUri: callbackSigningSecretUri
    maxReplicas: 10
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = deployFlex ? api.outputs.name : ''
output AZURE_CONTAINER_APP_NAME string = deployContainerApps ? apiContainerApp.outputs.name : ''
// azd pushes the Container Apps option's image here.
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = deployContainerApps ? registry.outputs.loginServer : ''
// The Dockerfile's torch build (azure.yaml passes it as a build argument): CUDA on a GPU profile.
output TORCH_BUILD string = gpuProfile == 'none' ? 'cpu' : 'cuda'
// The classifier's base URL: the Container Apps option's when it is deployed.
output SERVICE_API_URL string = deployContainerApps ? apiContainerApp.outputs.url : api.outputs.url
output DURABLE_BACKEND string = durableBackend
output DURABLE_TASK_SCHEDULER_ENDPOINT string = durableBackend == 'dts' ? scheduler.outputs.endpoint : ''
output DURABLE_TASK_HUB_NAME string = taskHubName
output BLOB_ACCOUNT_URL string = storage.outputs.blobEndpoint
output SQL_SERVER_FQDN string = sql.outputs.fullyQualifiedDomainName
