// The app's user-assigned identity: every connection of the function app (host storage, the app's blobs,
// Application Insights, the Durable Task Scheduler, Azure SQL) authenticates as it.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
