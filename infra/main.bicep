// Azure resources for the Graph backend, deployed by `azd up` (see docs/deploy.md).
// Subscription scope: creates the resource group, then everything inside it through modules.
// API versions were looked up in the Azure template reference (December 2026); CI compiles this file
// when a Bicep CLI is present (`./dev test` says plainly when it is not).
targetScope = 'subscription'

@minLength(1)
@maxLength(48)
@description('azd environment name; names and tags are derived from it.')
param environmentName string

@minLength(1)
@description('Region of every resource (must offer the Flex Consumption plan).')
param location string

@description('Python version of the Flex Consumption runtime: the version the test suite runs on.')
@allowed(['3.11', '3.12'])
param pythonVersion string = '3.11'

@description('Graph endpoint including version (national clouds: their Graph host).')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

@description('How the app gets Graph tokens; managed_identity needs no secret at all.')
@allowed(['managed_identity', 'client_secret']) // certificate mode needs a file on disk: not offered here
param graphAuthMode string = 'managed_identity'

@description('App registration client id (client_secret/certificate modes only); empty for managed_identity.')
param graphAppClientId string = ''

@description('Subscriptions to keep alive, e.g. "users=updated,deleted" (empty until Graph permissions are granted).')
param graphSubscriptions string = ''

@description('Object id of the person running azd (AZURE_PRINCIPAL_ID): may manage Key Vault secrets. Empty: nobody.')
param principalId string = ''

@description('Largest number of instances the Flex Consumption plan scales to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Provision the Event Hubs delivery path (namespace, hub, roles) and enable its trigger; off by default.')
param enableEventHubs bool = false

@description('Object id of the "Microsoft Graph Change Tracking" service principal (az ad sp show --id 0bf30f3b-4a52-48df-9a82-234910c4a086 --query id -o tsv); gets Azure Event Hubs Data Sender on the hub.')
param graphChangeTrackingPrincipalId string = ''

@description('tenantId written into EventHub: notification URLs (Microsoft shows the tenant\'s domain); empty: the tenant id.')
param eventHubTenant string = ''

@description('Partitions of the hub (fixed once created on the Standard tier).')
@minValue(1)
@maxValue(32)
param eventHubPartitionCount int = 4

@description('Rich notifications (docs/rich-notifications.md): verify validation tokens and decrypt resource data with the certificate stored in Key Vault as rich-notifications-certificate (PEM, exportable key). Off by default.')
param enableRichNotifications bool = false

@description('encryptionCertificateId of that certificate; change it with each rotation.')
@maxLength(128)
param richNotificationsCertificateId string = 'rich-notifications-1'

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

resource group 'Microsoft.Resources/resourceGroups@2025-04-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: group
  params: {
    name: 'id-graphfn-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: group
  params: {
    workspaceName: 'log-graphfn-${token}'
    componentName: 'appi-graphfn-${token}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: group
  params: {
    name: 'stgraphfn${token}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${token}'
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: group
  params: {
    name: 'kv-graphfn-${take(token, 12)}'
    location: location
    tags: tags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: group
  params: {
    identityPrincipalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    componentName: monitoring.outputs.componentName
    vaultName: vault.outputs.name
    operatorPrincipalId: principalId
  }
}

module eventHubs 'modules/eventhubs.bicep' = if (enableEventHubs) {
  name: 'eventhubs'
  scope: group
  params: {
    namespaceName: 'evhns-graphfn-${token}'
    hubName: 'graph-notifications'
    location: location
    tags: tags
    partitionCount: eventHubPartitionCount
    receiverPrincipalId: identity.outputs.principalId
    graphChangeTrackingPrincipalId: graphChangeTrackingPrincipalId
  }
}

module app 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: group
  dependsOn: [roles] // the host needs its storage and vault roles before its first start
  params: {
    name: 'func-graphfn-${token}'
    planName: 'plan-graphfn-${token}'
    location: location
    tags: tags
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    componentName: monitoring.outputs.componentName
    vaultName: vault.outputs.name
    graphBaseUrl: graphBaseUrl
    graphAuthMode: graphAuthMode
    graphAppClientId: graphAppClientId
    graphSubscriptions: graphSubscriptions
    eventHubNamespace: enableEventHubs ? eventHubs.outputs.fullyQualifiedNamespace : ''
    eventHubTenant: eventHubTenant
    enableRichNotifications: enableRichNotifications
    richNotificationsCertificateId: richNotificationsCertificateId
  }
}

// azd stores these in the environment (.azure/<env>/.env); docs/deploy.md uses them.
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${app.outputs.defaultHostName}'
output AZURE_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_KEY_VAULT_NAME string = vault.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_EVENTHUB_NAMESPACE string = enableEventHubs ? eventHubs.outputs.fullyQualifiedNamespace : ''

