// The registry the Container Apps option pulls its image from: no admin user, no anonymous pull. azd pushes
// with the deploying user's Entra token (remote build: ACR Tasks), the app pulls as its identity (AcrPull).
param name string
param location string
param tags object = {}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_139: azd pushes from the deploying user's machine or ACR Tasks; Entra-only, no admin user
  // checkov:skip=CKV_AZURE_163: image vulnerability scanning is Microsoft Defender for Containers, billed per image; a subscription choice
  sku: { name: 'Basic' }
  // checkov:skip=CKV_AZURE_166: image quarantine needs the Premium SKU; only azd pushes here
  // checkov:skip=CKV_AZURE_233: zone redundancy needs the Premium SKU
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
  }
}

output name string = registry.name
output loginServer string = registry.properties.loginServer
