// The function app on Flex Consumption (Linux, Python 3.13) and its app settings. Every connection uses the
// user-assigned identity: the host's storage (AzureWebJobsStorage__*), the app's blobs (BLOB_ACCOUNT_URL +
// AZURE_CLIENT_ID for DefaultAzureCredential), Application Insights, the Durable Task Scheduler and Azure SQL.
param name string
param planName string
param location string
param tags object = {}
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
@allowed([2048, 4096])
param instanceMemoryMB int
param maximumInstanceCount int
@description('Durable Task Scheduler endpoint; empty: the durable backend is the storage account.')
param schedulerEndpoint string
param sqlServerFqdn string
param sqlDatabaseName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var hostStorageSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
}

var monitoringSettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// host.json names the Durable Task Scheduler, in the package, where the scale controller reads it.
var durableTaskSchedulerSettings = {
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${schedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
}

// With the Azure Storage backend (no scheduler endpoint) these settings override host.json's storageProvider,
// as local.settings.json.example does for Core Tools with Azurite.
var azureStorageBackendSettings = {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'AzureStorage'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'AzureWebJobsStorage'
}

var durableBackendSettings = empty(schedulerEndpoint) ? azureStorageBackendSettings : durableTaskSchedulerSettings

var appSettings = {
  // DefaultAzureCredential in the app picks the user-assigned identity by this client id.
  AZURE_CLIENT_ID: identityClientId
  BLOB_ACCOUNT_URL: storage.properties.primaryEndpoints.blob
  // SQLAlchemy URL: the ODBC driver signs in as the identity (UID = its client id); no password.
  SQL_CONNECTION_STRING: 'mssql+pyodbc://${identityClientId}@${sqlServerFqdn}:1433/${sqlDatabaseName}?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes&authentication=ActiveDirectoryMsi'
  // The app's folder is read-only on Flex Consumption; weights and checkpoints go to the instance's /tmp.
  TORCH_HOME: '/tmp/torch'
  CHECKPOINT_CACHE_DIR: '/tmp/checkpoints'
  // Remote build installs torch from PyTorch's CPU wheel index (torch==X resolves to X+cpu there):
  // no CUDA libraries in a package for instances that have no GPU.
  PIP_EXTRA_INDEX_URL: 'https://download.pytorch.org/whl/cpu'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption needs always-ready instances, which bill at idle
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  // checkov:skip=CKV_AZURE_222: the app is a public HTTP API; every route needs a function key (AuthLevel.FUNCTION)
  // checkov:skip=CKV_AZURE_17: clients authenticate with function keys, not client certificates
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero; a minimum instance count would bill at idle
  // checkov:skip=CKV_AZURE_213: Flex Consumption has no App Service health check; the platform restarts failed instances
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: union(hostStorageSettings, monitoringSettings, durableBackendSettings, appSettings)
  }

  // Basic-auth publishing credentials off: azd deploys with the deploying user's Entra token.
  resource ftp 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: { allow: false }
  }

  resource scm 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: { allow: false }
  }
}

output name string = functionApp.name
output url string = 'https://${functionApp.properties.defaultHostName}'
