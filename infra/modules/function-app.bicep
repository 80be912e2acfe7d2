// The function app on Flex Consumption (Linux, Python 3.13): the default hosting option. Its settings are
// app-settings.bicep's (identity-only connections) plus what the remote build reads.
param name string
param planName string
param location string
param tags object = {}
param identityId string
param storageAccountName string
param deploymentContainerName string
@allowed([2048, 4096])
param instanceMemoryMB int
param maximumInstanceCount int
@description('app-settings.bicep: the settings both hosting options share.')
param appSettings object
@description('Key Vault URI of the secret CALLBACK_SIGNING_SECRET is read from (no version: the latest); empty: not set.')
param callbackSigningSecretUri string = ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

// Remote build installs torch from PyTorch's CPU wheel index (torch==X resolves to X+cpu there):
// no CUDA libraries in a package for instances that have no GPU.
var remoteBuildSettings = {
  PIP_EXTRA_INDEX_URL: 'https://download.pytorch.org/whl/cpu'
}

// A Key Vault reference: the platform resolves it as the user-assigned identity (keyVaultReferenceIdentity below,
// role Key Vault Secrets User in rbac.bicep) and the app reads the secret's value. If it cannot be resolved, the
// app sees the reference text itself and treats the setting as unset (settings.py), refusing callbacks. Only here:
// Container Apps does not resolve App Service references.
var keyVaultReferenceSettings = empty(callbackSigningSecretUri) ? {} : {
  CALLBACK_SIGNING_SECRET: '@Microsoft.KeyVault(SecretUri=${callbackSigningSecretUri})'
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
    // Key Vault references are resolved as this identity (the default would be a system-assigned one, which the
    // app does not have).
    keyVaultReferenceIdentity: identityId
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
    properties: union(appSettings, remoteBuildSettings, keyVaultReferenceSettings)
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
