// Everything the daemon runs on, in one resource group, with no keys anywhere:
// - a user-assigned managed identity: the app's identity for storage, Key Vault, Application
//   Insights and (in managed-identity modes) Microsoft Graph;
// - a storage account with shared-key access off: blob (deployment package, timer leases),
//   queue (jobs and poison), table (checkpoints, run records, ledgers), reached through
//   identity-based AzureWebJobsStorage__* settings;
// - Key Vault in RBAC mode (keyvault-* and client-secret modes) with the least role for the mode;
// - Application Insights with local auth off, written to with Monitoring Metrics Publisher;
// - a Flex Consumption function app (Linux, Python pinned) on that identity.
// Flex Consumption: https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to
// Identity-based connections: https://learn.microsoft.com/azure/azure-functions/functions-reference#configure-an-identity-based-connection
// Key Vault RBAC roles: https://learn.microsoft.com/azure/key-vault/general/rbac-guide

param location string
param tags object
param resourceToken string
param principalId string
param authMode string
param clientId string
param tenantId string
param allowedTenants string
param certificateName string
param userDomain string
param sweepSchedule string
param maximumInstanceCount int
param pythonVersion string

var jobsQueueName = 'daemon-jobs'
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var clientSecretReference = '@Microsoft.KeyVault(VaultName=kv-${resourceToken};SecretName=daemon-client-secret)'
var usesKeyVault = authMode == 'keyvault-certificate' || authMode == 'keyvault-signing' || authMode == 'client-secret'

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles)
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // host: deployment package, timer leases
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // trigger, fan-out, poison
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // checkpoints, runs, ledgers
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // App Insights, local auth off
  keyVaultCertificateUser: 'db79e9a7-68ee-4b58-9aeb-b90e7c24fcba' // export mode: certificate + its secret
  keyVaultCryptoUser: '12338af0-0e69-4776-bea7-57ae8d297424' // signing mode: keys/sign
  keyVaultReader: '21090545-7ca7-4776-b22c-e363652d74d2' // signing mode: certificate metadata (x5t)
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // client-secret mode: the secret
  keyVaultCertificatesOfficer: 'a4417e6f-fecd-4de8-b567-7b0420556985' // the deployer: upload/rotate
}
var vaultRolesByMode = {
  'keyvault-certificate': [roles.keyVaultCertificateUser]
  'keyvault-signing': [roles.keyVaultCryptoUser, roles.keyVaultReader]
  'client-secret': [roles.keyVaultSecretsUser]
}
var vaultRoles = usesKeyVault ? vaultRolesByMode[authMode] : []
var storageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: LRS is the Functions quickstarts' choice; every durable record (run records, checkpoints) can be rebuilt from the directory, so geo-replication buys little
  // checkov:skip=CKV_AZURE_59: Flex Consumption without a virtual network has no fixed egress addresses; shared-key access is off, so every request needs an Entra token with a data role
  // checkov:skip=CKV_AZURE_35: same reason as CKV_AZURE_59 (a deny-by-default firewall needs a virtual network for the app)
  // checkov:skip=CKV_AZURE_43: the name is 'st' + a 13-character uniqueString, lower case: valid, but checkov cannot evaluate the expression
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    isLocalUserEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource jobsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: jobsQueueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${jobsQueueName}-poison'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = if (usesKeyVault) {
  // checkov:skip=CKV_AZURE_109: see CKV_AZURE_189
  // checkov:skip=CKV_AZURE_110: purge protection IS on (below); checkov does not read the properties of a conditional resource (checked: it passes without the condition)
  // checkov:skip=CKV_AZURE_42: soft delete and purge protection ARE on (below); same checkov limitation as CKV_AZURE_110
  // checkov:skip=CKV_AZURE_189: Flex Consumption without a virtual network has no fixed egress addresses to allow; access needs an Entra token with an RBAC data role on this vault
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is not a setting of the Flex Consumption plan (FC1)
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

// Every setting the code reads (shared/settings.py SETTINGS; a test keeps them equal).
var daemonSettings = {
  DAEMON_AUTH_MODE: authMode
  DAEMON_TENANT_ID: tenantId
  DAEMON_CLIENT_ID: clientId
  DAEMON_ALLOWED_TENANTS: allowedTenants
  DAEMON_KEY_VAULT_URL: usesKeyVault ? vault!.properties.vaultUri : ''
  DAEMON_CERTIFICATE_NAME: certificateName
  DAEMON_MANAGED_IDENTITY_CLIENT_ID: identity.properties.clientId
  DAEMON_API_BASE_URL: 'https://graph.microsoft.com/v1.0'
  DAEMON_API_SCOPE: 'https://graph.microsoft.com/.default'
  DAEMON_AUTHORITY_HOST: 'https://login.microsoftonline.com'
  DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE: 'true'
  // a Key Vault reference, resolved by the platform with the app's identity; never a literal
  DAEMON_CLIENT_SECRET: authMode == 'client-secret' ? clientSecretReference : ''
  DAEMON_SEND_X5C: 'false'
  DAEMON_CERTIFICATE_CHECK_SECONDS: '3600'
  DAEMON_JOBS_QUEUE: jobsQueueName
  DAEMON_SWEEP_SCHEDULE: sweepSchedule
  DAEMON_USER_DOMAIN: userDomain
  DAEMON_MAX_CHANGES_PER_RUN: '1000'
  DAEMON_SWEEP_CHUNK_SIZE: '100'
  DAEMON_OPERATIONS_ALLOWED_METHODS: 'GET,PATCH'
  DAEMON_OPERATIONS_ALLOWED_PATHS: '/users/,/groups/'
  DAEMON_API_WRITES_PER_SECOND: '20'
  DAEMON_API_RESOURCE_UNITS_PER_SECOND: '350'
  DAEMON_API_HTTP2: 'false'
  DAEMON_API_THROTTLE_PRIORITY: 'Low'
  DAEMON_REPLICATION_RETRY_SECONDS: '60'
  DAEMON_FLEET_BUDGET: 'true'
}

// The host's own settings: identity-based storage and Application Insights without keys.
var platformSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: azd deploys through the app's public SCM endpoint; the app has no HTTP functions, so nothing else is served
  // checkov:skip=CKV_AZURE_17: client certificates guard HTTP functions; the app has none (timer and queue triggers only)
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per function; always-ready instances are a cost choice, not a failover need for queue work (messages wait in the queue)
  // checkov:skip=CKV_AZURE_213: health checks probe HTTP endpoints; the app has none
  name: functionAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'daemon' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(union(platformSettings, daemonSettings)): { name: setting.key, value: setting.value }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
  dependsOn: [deploymentContainer, jobsQueue, poisonQueue, tableService]
}

resource storageRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in storageRoles: {
    name: guid(storage.id, identity.id, role)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource deployerStorageRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in (empty(principalId) ? [] : storageRoles): {
    name: guid(storage.id, principalId, role)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: principalId
      principalType: 'User'
    }
  }
]

resource vaultRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in vaultRoles: {
    name: guid(resourceGroup().id, 'kv-${resourceToken}', identity.id, role)
    scope: vault
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource deployerVaultRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (usesKeyVault && !empty(principalId)) {
  name: guid(resourceGroup().id, 'kv-${resourceToken}', principalId, roles.keyVaultCertificatesOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultCertificatesOfficer)
    principalId: principalId
    principalType: 'User'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

output functionAppName string = functionApp.name
output keyVaultUrl string = usesKeyVault ? vault!.properties.vaultUri : ''
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output storageAccountName string = storage.name
