"""The directory's schema: the properties of users and groups, their kinds and defaults.

Property kinds: ``str``, ``bool``, ``datetime``, ``strs`` (a collection of strings), ``obj``.
"""

from __future__ import annotations

# Property name -> kind. Kinds: str, bool, datetime, strs (collection of strings), obj.
USER_PROPERTIES: dict[str, str] = {
    "id": "str",
    "accountEnabled": "bool",
    "businessPhones": "strs",
    "city": "str",
    "companyName": "str",
    "country": "str",
    "createdDateTime": "datetime",
    "department": "str",
    "displayName": "str",
    "employeeHireDate": "datetime",
    "employeeId": "str",
    "employeeLeaveDateTime": "datetime",
    "employeeType": "str",
    "givenName": "str",
    "jobTitle": "str",
    "mail": "str",
    "mailNickname": "str",
    "mobilePhone": "str",
    "officeLocation": "str",
    "onPremisesImmutableId": "str",
    "otherMails": "strs",
    "passwordProfile": "obj",
    "preferredLanguage": "str",
    "proxyAddresses": "strs",
    "surname": "str",
    "usageLocation": "str",
    "userPrincipalName": "str",
    "userType": "str",
}
# What GET /users returns without $select (Graph v1.0 default property set).
USER_DEFAULT_SELECT: tuple[str, ...] = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
USER_READ_ONLY = frozenset({"id", "createdDateTime", "proxyAddresses"})
USER_NEVER_RETURNED = frozenset({"passwordProfile"})
USER_REQUIRED_ON_CREATE = (
    "accountEnabled",
    "displayName",
    "mailNickname",
    "userPrincipalName",
    "passwordProfile",
)

GROUP_PROPERTIES: dict[str, str] = {
    "id": "str",
    "createdDateTime": "datetime",
    "description": "str",
    "displayName": "str",
    "groupTypes": "strs",
    "mail": "str",
    "mailEnabled": "bool",
    "mailNickname": "str",
    "securityEnabled": "bool",
    "visibility": "str",
}
GROUP_DEFAULT_SELECT: tuple[str, ...] = tuple(GROUP_PROPERTIES)
GROUP_READ_ONLY = frozenset({"id", "createdDateTime", "mail"})
GROUP_REQUIRED_ON_CREATE = ("displayName", "mailEnabled", "mailNickname", "securityEnabled")
