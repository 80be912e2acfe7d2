// The Key Vault that holds CALLBACK_SIGNING_SECRET, the HMAC-SHA256 key of callback bodies. main.bicep deploys
// this module only when a key is given (azd env set CALLBACK_SIGNING_SECRET ...), so the vault and the secret exist
// only then. The Flex Consumption app reads the secret through a Key Vault reference, resolved by the platform as
// the user-assigned identity (keyVaultReferenceIdentity in function-app.bicep), the Container Apps option as a
// container app secret read as the same identity (container-app.bicep); it has Key Vault Secrets User on this
// vault (rbac.bicep). Authorization is Azure RBAC only: no access policies. The key goes in as a secure
// parameter and is never an output.
param name string
param location string
param tags object = {}
@description('Name of the secret; main.bicep builds the app setting (a Key Vault reference) from the vault URI and it.')
param callbackSigningSecretName string
@secure()
@description('HMAC-SHA256 key for callback bodies (main.bicep deploys this module only when it is not empty).')
param callbackSigningSecret string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_109: Flex Consumption without a virtual network has no fixed outbound addresses, so a firewall cannot admit the app; access is by Entra role only (RBAC authorization)
  // checkov:skip=CKV_AZURE_189: same as CKV_AZURE_109: public endpoint, Entra-only access, as the storage account and Azure SQL
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    accessPolicies: []
    enableSoftDelete: true
    // The shortest retention Azure allows: with purge protection a deleted vault cannot be purged, and its name
    // (the same for an azd environment name) cannot be reused until the retention has passed.
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource callbackSigning 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: callbackSigningSecretName
  // checkov:skip=CKV_AZURE_41: an expiry date would stop the platform from resolving the reference and refuse every callback with no rotation in place; the key is rotated by re-provisioning (azd env set, azd provision)
  properties: {
    value: callbackSigningSecret
    contentType: 'text/plain'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
