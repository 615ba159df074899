// Data-plane roles of the app's identity (and, optionally, the operator's Key Vault role).
param identityPrincipalId string
param storageAccountName string
param componentName string
param vaultName string
param operatorPrincipalId string = ''

// Built-in role definition ids (the same in every tenant).
var storageRoles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // host: leases, deployment package
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // triggers, work queues
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // cache, breakers, registry
}
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource account 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource component 'Microsoft.Insights/components@2020-02-02' existing = {
  name: componentName
}

resource vault 'Microsoft.KeyVault/vaults@2025-05-01' existing = {
  name: vaultName
}

resource storageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in items(storageRoles): {
    name: guid(account.id, identityPrincipalId, role.value)
    scope: account
    properties: {
      principalId: identityPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.value)
    }
  }
]

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(component.id, identityPrincipalId, monitoringMetricsPublisher)
  scope: component
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: operatorPrincipalId // a user locally, the deploying service principal in CI: type left to Azure
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
  }
}
