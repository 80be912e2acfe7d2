// The Durable Task Scheduler and the task hub the app's orchestrations run in. The Consumption SKU bills
// per action, nothing at idle. Orchestration history is on the scheduler's dashboard (https://dashboard.durabletask.io).
param name string
param taskHubName string
param location string
param tags object = {}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: { name: 'Consumption' }
    ipAllowlist: ['0.0.0.0/0'] // an empty list denies every caller; access is by Entra role only
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

output name string = scheduler.name
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
