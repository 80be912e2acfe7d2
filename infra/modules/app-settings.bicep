// The app settings both hosting options use (Flex Consumption app settings, Container Apps environment
// variables). Every connection uses the user-assigned identity: the host's storage (AzureWebJobsStorage__*),
// the app's blobs (BLOB_ACCOUNT_URL + AZURE_CLIENT_ID for DefaultAzureCredential), Application Insights,
// the Durable Task Scheduler and Azure SQL (an access token from the same credential).
param identityClientId string
param storageAccountName string
param applicationInsightsName string
@description('Durable Task Scheduler endpoint; empty: the durable backend is the storage account.')
param schedulerEndpoint string
param sqlServerFqdn string
param sqlDatabaseName string
@description('Comma-separated hosts reply_to callback URLs may point at; empty: callback URLs refused.')
param callbackAllowedHosts string = ''
@description('The weights of each model (MODEL_WEIGHTS_*), and the hosts URL images may come from.')
param modelWeightsResnet18 string = 'IMAGENET1K_V1'
param modelWeightsResnet50 string = 'IMAGENET1K_V2'
param urlAllowedHosts string = ''

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
  // SQLAlchemy URL without user or password: the app signs in with an access token for the identity
  // (storage/sql_access_token.py); ODBC Driver 18 is in the Functions Python images.
  SQL_CONNECTION_STRING: 'mssql+pyodbc://${sqlServerFqdn}:1433/${sqlDatabaseName}?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes&authentication=ActiveDirectoryAccessToken'
  // The app's folder is read-only on Flex Consumption; weights and checkpoints go to the instance's /tmp.
  TORCH_HOME: '/tmp/torch'
  CHECKPOINT_CACHE_DIR: '/tmp/checkpoints'
  // One thread per activity host.json lets run at once (maxConcurrentActivityFunctions): an inference
  // activity waiting for its turn in the dynamic batcher holds a thread, and with the worker's default
  // (cores + 4) preprocessing and persisting queued behind those waits.
  PYTHON_THREADPOOL_THREAD_COUNT: '16'
  // Callbacks also need CALLBACK_SIGNING_SECRET from the Key Vault: a Key Vault reference set in function-app.bicep,
  // a container app secret in container-app.bicep.
  CALLBACK_ALLOWED_HOSTS: callbackAllowedHosts
  // Parameters rather than settings set by hand: a provision replaces the whole collection of app settings.
  MODEL_WEIGHTS_RESNET18: modelWeightsResnet18
  MODEL_WEIGHTS_RESNET50: modelWeightsResnet50
  URL_ALLOWED_HOSTS: urlAllowedHosts
  // The serverless database pauses after an idle hour (sql.bicep) and answers error 40613 until it has resumed,
  // which can take a minute: persisting is retried for longer than other activities (7 attempts 10 s apart).
  PERSIST_RETRY_ATTEMPTS: '7'
  PERSIST_RETRY_INTERVAL_MS: '10000'
}

output settings object = union(hostStorageSettings, monitoringSettings, durableBackendSettings, appSettings)
