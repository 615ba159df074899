// The Event Hubs delivery path (docs/eventhubs.md): a namespace without shared keys, one hub, and the two
// data-plane roles it needs. Graph writes with its own identity, the "Microsoft Graph Change Tracking"
// service principal (appId 0bf30f3b-4a52-48df-9a82-234910c4a086, one object per tenant), which Microsoft's
// docs give the Azure Event Hubs Data Sender role on the hub; the app's identity reads with Data Receiver.
// The trigger's checkpoints go to AzureWebJobsStorage (blob), which the identity already owns.
param namespaceName string
param hubName string
param location string
param tags object
param partitionCount int
param receiverPrincipalId string
@description('Object id of the Microsoft Graph Change Tracking service principal in this tenant; empty: no sender role.')
param graphChangeTrackingPrincipalId string

// Built-in role definition ids (the same in every tenant).
var dataReceiver = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
var dataSender = '2b629674-e913-4c01-ae53-ef4638d8f975'

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: { name: 'Standard', tier: 'Standard', capacity: 1 } // 1 throughput unit: 1 MB/s or 1,000 events/s in
  properties: {
    disableLocalAuth: true // Entra only, as the storage account
    minimumTlsVersion: '1.2'
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: 1
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, receiverPrincipalId, dataReceiver)
  scope: hub
  properties: {
    principalId: receiverPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataReceiver)
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(graphChangeTrackingPrincipalId)) {
  name: guid(hub.id, graphChangeTrackingPrincipalId, dataSender)
  scope: hub
  properties: {
    principalId: graphChangeTrackingPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataSender)
  }
}

output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output hubName string = hub.name
