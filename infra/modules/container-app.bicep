// The app as Azure Functions on Azure Container Apps (kind functionapp): the image built from the Dockerfile,
// on the Consumption or a serverless GPU workload profile, with the same identity-only settings as the Flex
// Consumption app (app-settings.bicep) as environment variables. The image is pulled as the identity (AcrPull).
param name string
param location string
param tags object = {}
param identityId string
param environmentId string
param workloadProfileName string
param registryLoginServer string
@description('Image to run; before the first `azd deploy`, the Functions Python base image (an empty app).')
param image string
@description('app-settings.bicep: the settings both hosting options share.')
param appSettings object
@description('vCPUs and memory of a replica: what the workload profile gives one replica.')
param cpu string
param memory string
@description('0 scales to zero; the Azure Storage durable backend needs 1 (no event-driven scaling for it).')
param minReplicas int
param maxReplicas int
@description('Versionless URI of the CALLBACK_SIGNING_SECRET secret in the Key Vault; empty: none (callbacks refused).')
param callbackSigningSecretUri string = ''

// Container Apps resolves no `@Microsoft.KeyVault(...)` app setting: the key is a container app secret that the
// platform reads from the vault as the identity (Key Vault Secrets User, rbac.bicep), given to the container as
// an environment variable. Without a version in the URI the app follows the latest version of the secret.
var settingsEnv = [for setting in items(appSettings): { name: setting.key, value: setting.value }]
var callbackSecrets = empty(callbackSigningSecretUri) ? [] : [
  { name: 'callback-signing-secret', keyVaultUrl: callbackSigningSecretUri, identity: identityId }
]
var callbackEnv = empty(callbackSigningSecretUri) ? [] : [
  { name: 'CALLBACK_SIGNING_SECRET', secretRef: 'callback-signing-secret' }
]

// API version of Microsoft's sample for Functions on Container Apps (samples/ACAKindfunctionapp/main.bicep).
resource app 'Microsoft.App/containerApps@2024-10-02-preview' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    managedEnvironmentId: environmentId
    workloadProfileName: workloadProfileName
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true // the HTTP API; every route needs a function key (AuthLevel.FUNCTION)
        targetPort: 80 // the Functions host in the base image listens on port 80
        allowInsecure: false
      }
      registries: [{ server: registryLoginServer, identity: identityId }]
      secrets: callbackSecrets
    }
    template: {
      containers: [
        {
          name: 'api'
          image: image
          env: concat(settingsEnv, callbackEnv)
          resources: {
            cpu: json(cpu)
            memory: memory
          }
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
      }
    }
  }
}

output name string = app.name
output url string = 'https://${app.properties.configuration.ingress.fqdn}'
