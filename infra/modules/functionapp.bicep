// The function app on a Flex Consumption plan, and every app setting it reads.
// The runtime (Python version) lives in functionAppConfig, not in app settings: Flex Consumption rejects
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION.
param name string
param planName string
param location string
param tags object
param pythonVersion string
param maximumInstanceCount int
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param componentName string
param vaultName string
param graphBaseUrl string
param graphAuthMode string
param graphAppClientId string
param graphSubscriptions string
@description('Event Hubs namespace host of the hub path; empty: the path is off and its trigger disabled.')
param eventHubNamespace string
param eventHubTenant string
@description('Turns RICH_NOTIFICATIONS on with the certificate from the vault (secret rich-notifications-certificate).')
param enableRichNotifications bool
param richNotificationsCertificateId string

resource account 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource component 'Microsoft.Insights/components@2020-02-02' existing = {
  name: componentName
}

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true } // Linux
}

resource site 'Microsoft.Web/sites@2024-11-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' }) // azure.yaml's service
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId // Key Vault references resolve with the user-assigned identity
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: 2048
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: { name: 'python', version: pythonVersion }
    }
  }
}

// Secrets are Key Vault references, resolved by the platform with the identity (Key Vault Secrets User).
// Put the secret in the vault under this name (docs/deploy.md) before switching GRAPH_AUTH_MODE.
var clientSecretReference = '@Microsoft.KeyVault(VaultName=${vaultName};SecretName=graph-client-secret)'
// A Key Vault certificate's secret of the same name holds its private key and certificate (PEM content type).
var richCertificateReference = '@Microsoft.KeyVault(VaultName=${vaultName};SecretName=rich-notifications-certificate)'

// Every setting of shared/settings.py, with its production value, plus the host's own settings.
// tests/unit/test_infra.py checks that the names below are exactly what the app and host read.
// app-settings:begin
resource appSettings 'Microsoft.Web/sites/config@2024-11-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Host storage and the app's Table/Queue clients: identity-based, no connection string.
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: account.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: account.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: account.properties.primaryEndpoints.table
    // Application Insights with local auth disabled: Entra ingestion with the identity.
    APPLICATIONINSIGHTS_CONNECTION_STRING: component.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    STORAGE_TABLE_PREFIX: 'graphfn'
    GRAPH_BASE_URL: graphBaseUrl
    GRAPH_AUTH_MODE: graphAuthMode
    GRAPH_TENANT_ID: tenant().tenantId
    GRAPH_CLIENT_ID: graphAuthMode == 'managed_identity' ? identityClientId : graphAppClientId
    GRAPH_CLIENT_SECRET: graphAuthMode == 'client_secret' ? clientSecretReference : ''
    GRAPH_CERTIFICATE_PATH: ''
    GRAPH_CERTIFICATE_PASSWORD: ''
    GRAPH_STATIC_TOKEN: '' // simulator only; refused for a real Graph endpoint
    GRAPH_TIMEOUT_SECONDS: '10'
    HEALTH_PROBE_TIMEOUT_SECONDS: '2'
    LOG_LEVEL: 'INFO'
    LOG_FORMAT: 'text'
    CACHE_L1_TTL_SECONDS: '1.0'
    CACHE_L1_MAX_ENTRIES: '2048'
    CACHE_USER_TTL_SECONDS: '300.0'
    CACHE_MESSAGES_TTL_SECONDS: '60.0'
    CACHE_MAX_STALE_SECONDS: '3600.0'
    CACHE_NEGATIVE_TTL_SECONDS: '30.0'
    RETRY_MAX_ATTEMPTS: '3'
    RETRY_BUDGET_SECONDS: '20.0'
    RETRY_MAX_RETRY_AFTER_SECONDS: '10.0'
    BREAKER_FAILURE_RATIO: '0.5'
    BREAKER_MIN_CALLS: '20'
    BREAKER_WINDOW_SECONDS: '30.0'
    BREAKER_CONSECUTIVE_FAILURES: '5'
    BREAKER_OPEN_SECONDS: '10.0'
    BREAKER_MAX_OPEN_SECONDS: '300.0'
    BREAKER_STORAGE_OUTAGE: 'fail_open'
    GRAPH_MAILBOX_CONCURRENCY: '4'
    WEBHOOK_MAX_BODY_BYTES: '1048576'
    WEBHOOK_FLUSH_INTERVAL_MS: '100.0'
    BACKGROUND_TARGET_LAG_MS: '20.0'
    BACKGROUND_TARGET_ACK_MS: '100.0'
    BACKGROUND_TARGET_DELAY_MS: '1000.0'
    WEBHOOK_BASE_URL: 'https://${site.properties.defaultHostName}/api'
    GRAPH_SUBSCRIPTIONS: graphSubscriptions
    SUBSCRIPTION_RENEWAL_SCHEDULE: '0 */30 * * * *'
    SUBSCRIPTION_RENEW_BEFORE_HOURS: '48.0'
    MAINTENANCE_SCHEDULE: '0 */15 * * * *'
    TIMER_STARTUP_DELAY_SECONDS: '3.0'
    FORWARD_ENRICH: 'false'
    FORWARD_EVENTS_PER_MESSAGE: '100'
    GRAPH_RATE_LIMIT: '600/10'
    MIRROR_DEBOUNCE_SECONDS: '2.0'
    MIRROR_SAFETY_INTERVAL_SECONDS: '300.0'
    MIRROR_MAX_STALENESS_SECONDS: '600.0'
    MIRROR_SCHEDULE: '0 * * * * *'
    // The Event Hubs trigger's identity-based connection GRAPH_EVENTHUB (docs/eventhubs.md).
    GRAPH_EVENTHUB__fullyQualifiedNamespace: eventHubNamespace
    GRAPH_EVENTHUB__credential: 'managedidentity'
    GRAPH_EVENTHUB__clientId: identityClientId
    GRAPH_EVENTHUB_NAME: 'graph-notifications'
    GRAPH_EVENTHUB_TENANT: eventHubTenant
    // Without a namespace the trigger would fail to start its listener: the host skips it instead.
    'AzureWebJobs.process_eventhub.Disabled': empty(eventHubNamespace) ? 'true' : 'false'
    // Rich notifications (enableRichNotifications): the certificate is a Key Vault reference
    // (docs/rich-notifications.md). The audience defaults to GRAPH_CLIENT_ID.
    RICH_NOTIFICATIONS: enableRichNotifications ? 'true' : 'false'
    RICH_NOTIFICATIONS_CACHE: 'true'
    RICH_NOTIFICATIONS_CERTIFICATE: enableRichNotifications ? richCertificateReference : ''
    RICH_NOTIFICATIONS_CERTIFICATE_ID: enableRichNotifications ? richNotificationsCertificateId : ''
    RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE: ''
    RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE_ID: ''
    RICH_NOTIFICATIONS_AUDIENCE: ''
    RICH_NOTIFICATIONS_OPENID_CONFIGURATION: 'https://login.microsoftonline.com/common/.well-known/openid-configuration'
  }
}
// app-settings:end

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
