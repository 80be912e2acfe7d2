// Azure SQL with Entra ID authentication only (no SQL logins, no passwords). The app's identity is the
// server's Entra admin, so the app creates its tables on first start (storage.database.ensure_schema)
// without a post-provision script. The serverless database pauses after an hour without connections.
param serverName string
param databaseName string
param location string
param tags object = {}
param adminIdentityName string
param adminIdentityPrincipalId string

resource server 'Microsoft.Sql/servers@2023-08-01' = {
  name: serverName
  // checkov:skip=CKV_AZURE_113: Flex Consumption without a virtual network connects over the public endpoint; Entra-only authentication
  location: location
  tags: tags
  properties: {
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: adminIdentityName
      sid: adminIdentityPrincipalId
      principalType: 'Application'
      tenantId: tenant().tenantId
    }
  }

}

// Flex Consumption has no fixed outbound addresses without a virtual network: let Azure services in
// (0.0.0.0 - 0.0.0.0 is Azure's own "allow Azure services" rule, not the internet); Entra still decides who.
resource allowAzureServices 'Microsoft.Sql/servers/firewallRules@2023-08-01' = {
  parent: server
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource database 'Microsoft.Sql/servers/databases@2023-08-01' = {
  parent: server
  // checkov:skip=CKV_AZURE_229: zone redundancy is not offered for this serverless single-vCore tier at this cost
  name: databaseName
  // checkov:skip=CKV_AZURE_26: threat-detection alert e-mails need Defender for SQL (see CKV_AZURE_25)
  // checkov:skip=CKV_AZURE_27: threat-detection alert e-mails need Defender for SQL (see CKV_AZURE_25)
  location: location
  tags: tags
  sku: {
    name: 'GP_S_Gen5_1'
    tier: 'GeneralPurpose'
  }
  properties: {
    autoPauseDelay: 60
    minCapacity: json('0.5')
    maxSizeBytes: 2147483648
    zoneRedundant: false
  }
}

output fullyQualifiedDomainName string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
