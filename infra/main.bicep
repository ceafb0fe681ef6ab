// `azd up` entry point: a resource group with everything the daemon needs, and no keys.
// The resources themselves are in resources.bicep; README "Deploy" explains each parameter.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; a short hash of it names every resource.')
param environmentName string

@minLength(1)
@description('Region of every resource; it must offer the Flex Consumption plan.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the person running azd: gets data roles on storage and Key Vault to upload the certificate and read run records. Empty: none.')
param principalId string = ''

@allowed([
  'managed-identity'
  'keyvault-certificate'
  'keyvault-signing'
  'federated-managed-identity'
  'client-secret'
])
@description('DAEMON_AUTH_MODE: how the daemon gets app-only tokens.')
param authMode string = 'managed-identity'

@description('DAEMON_CLIENT_ID: the app registration (empty for managed-identity).')
param clientId string = ''

@description('DAEMON_TENANT_ID: the home tenant (default: this subscription\'s tenant).')
param tenantId string = tenant().tenantId

@description('DAEMON_ALLOWED_TENANTS: comma-separated tenants the daemon may act in (empty: the home tenant only).')
param allowedTenants string = ''

@description('DAEMON_CERTIFICATE_NAME: the certificate in the vault (keyvault-* modes).')
param certificateName string = 'daemon-cert'

@description('DAEMON_USER_DOMAIN: the verified domain of users the provision job creates.')
param userDomain string = ''

@description('DAEMON_SWEEP_SCHEDULE: NCRONTAB (with seconds) of the sweep timer.')
param sweepSchedule string = '0 */15 * * * *'

@description('Flex Consumption maximumInstanceCount; see README "Deploy" for the budget arithmetic.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed(['3.11', '3.12'])
@description('Python version of the app (pinned: a remote build otherwise picks its own).')
param pythonVersion string = '3.11'

var tags = { 'azd-env-name': environmentName }
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'daemon-resources'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    principalId: principalId
    authMode: authMode
    clientId: clientId
    tenantId: tenantId
    allowedTenants: allowedTenants
    certificateName: certificateName
    userDomain: userDomain
    sweepSchedule: sweepSchedule
    maximumInstanceCount: maximumInstanceCount
    pythonVersion: pythonVersion
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenantId
output AZURE_FUNCTION_NAME string = resources.outputs.functionAppName
output AZURE_KEY_VAULT_URL string = resources.outputs.keyVaultUrl
output DAEMON_MANAGED_IDENTITY_CLIENT_ID string = resources.outputs.identityClientId
output DAEMON_MANAGED_IDENTITY_PRINCIPAL_ID string = resources.outputs.identityPrincipalId
output AZURE_STORAGE_ACCOUNT_NAME string = resources.outputs.storageAccountName
