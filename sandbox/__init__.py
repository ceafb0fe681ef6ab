"""Offline, strict stand-ins for the cloud services the daemon talks to.

Entra ID (token endpoint, discovery, JWKS), the App Service managed-identity endpoint, Key
Vault and a Graph-like directory API, served over HTTPS on localhost with a throwaway CA.
Nothing in ``shared/`` imports this package: clients reach it only through configuration.
"""
