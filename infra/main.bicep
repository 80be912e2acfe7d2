// The whole system for `azd up`: a Flex Consumption function app (Python 3.13) with a user-assigned identity,
// the Durable Task Scheduler (or Azure Storage) as the durable backend, a storage account for the host and the
// app's images/tensors, Azure SQL with Entra-only authentication, and Application Insights.
// Every connection is identity-based: no account key, password or instrumentation key is set anywhere.
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

@description('Durable Functions backend: the Durable Task Scheduler (default) or the storage account.')
@allowed(['dts', 'azureStorage'])
param durableBackend string = 'dts'

@description('Flex Consumption instance size: 4096 MB has 2 cores, 2048 MB has 1.')
@allowed([2048, 4096])
param instanceMemoryMB int = 4096

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Task hub name: the one host.json names (extensions.durableTask.hubName).')
param taskHubName string = 'ClassifierHub'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = 'func-${resourceToken}'
// Flex Consumption deploys from a package in this container.
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'

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

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    schedulerName: durableBackend == 'dts' ? scheduler.outputs.name : ''
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
  }
}

module api 'modules/function-app.bicep' = {
  name: 'api'
  scope: rg
  dependsOn: [rbac]
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    schedulerEndpoint: durableBackend == 'dts' ? scheduler.outputs.endpoint : ''
    sqlServerFqdn: sql.outputs.fullyQualifiedDomainName
    sqlDatabaseName: sql.outputs.databaseName
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_URL string = api.outputs.url
output DURABLE_BACKEND string = durableBackend
output DURABLE_TASK_SCHEDULER_ENDPOINT string = durableBackend == 'dts' ? scheduler.outputs.endpoint : ''
output DURABLE_TASK_HUB_NAME string = taskHubName
output BLOB_ACCOUNT_URL string = storage.outputs.blobEndpoint
output SQL_SERVER_FQDN string = sql.outputs.fullyQualifiedDomainName
