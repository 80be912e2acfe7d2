// The Container Apps environment for the GPU / big-model option: the Consumption workload profile and, unless
// gpuProfile is 'none', a serverless GPU profile (billed per second while a replica runs, nothing at zero).
// Logs go to Log Analytics through Azure Monitor diagnostic settings, not the workspace's shared key.
param name string
param location string
param tags object = {}
param logAnalyticsWorkspaceId string
@description('Serverless GPU workload profile type, or none for CPU only.')
@allowed(['none', 'Consumption-GPU-NC8as-T4', 'Consumption-GPU-NC24-A100'])
param gpuProfile string

// The name apps give as workloadProfileName: the built-in Consumption profile, or the GPU one.
var gpuProfileName = 'gpu'
var consumptionProfile = {
  name: 'Consumption'
  workloadProfileType: 'Consumption'
}
var gpuWorkloadProfile = {
  name: gpuProfileName
  workloadProfileType: gpuProfile
}
var workloadProfiles = gpuProfile == 'none' ? [consumptionProfile] : [consumptionProfile, gpuWorkloadProfile]

// API version of Microsoft's sample for Functions on Container Apps (samples/ACAKindfunctionapp/main.bicep).
resource environment 'Microsoft.App/managedEnvironments@2024-10-02-preview' = {
  name: name
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: { destination: 'azure-monitor' }
    workloadProfiles: workloadProfiles
    zoneRedundant: false
  }
}

resource logs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs-to-log-analytics'
  scope: environment
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [{ categoryGroup: 'allLogs', enabled: true }]
  }
}

output id string = environment.id
output workloadProfileName string = gpuProfile == 'none' ? 'Consumption' : gpuProfileName
