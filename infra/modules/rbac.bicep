// The least data roles the app identity needs, and the dashboard role for the deploying user.
param storageAccountName string
param applicationInsightsName string
@description('Durable Task Scheduler name; empty when the durable backend is Azure Storage.')
param schedulerName string
@description('Container registry name; empty when the app runs on Flex Consumption (no image to pull).')
param registryName string
@description('Key Vault name; empty when no callback signing secret was given (no vault).')
param keyVaultName string
param identityPrincipalId string
@description('Deploying user (azd sets AZURE_PRINCIPAL_ID); empty: no user role.')
param userPrincipalId string
@description('User, or ServicePrincipal for a pipeline: ARM refuses an assignment whose type does not match.')
param userPrincipalType string = 'User'

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // host blobs, deployment package, app images/tensors
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // host queues; the durable work queues on Azure Storage
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // durable history and instances on Azure Storage
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Entra-authenticated Application Insights
  durableTaskDataContributor: '0ad04412-c4d5-4796-b79c-f76d14c8d402' // the scheduler's task hubs
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d' // the Container Apps option pulls its image
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // CALLBACK_SIGNING_SECRET from the vault
}
var storageRoles = [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' existing = if (!empty(schedulerName)) {
  name: schedulerName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = if (!empty(registryName)) {
  name: registryName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = if (!empty(keyVaultName)) {
  name: keyVaultName
}

resource storageRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, identityPrincipalId, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource durableTaskApp 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(schedulerName)) {
  name: guid(scheduler.id, identityPrincipalId, roles.durableTaskDataContributor)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.durableTaskDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource durableTaskUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(schedulerName) && !empty(userPrincipalId)) {
  name: guid(scheduler.id, userPrincipalId, roles.durableTaskDataContributor)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.durableTaskDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource imagePull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(registryName)) {
  name: guid(registry.id, identityPrincipalId, roles.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Reads secrets (values and properties, no writes): what the platform needs to resolve the Flex app's Key Vault
// reference and the container app's Key Vault secret.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(keyVaultName)) {
  name: guid(vault.id, identityPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}
