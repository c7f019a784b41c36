"""Security building blocks: credentials, authorization, encryption at rest, limits.

Each module has one job and none of them knows about HTTP or storage; the HTTP layer and the
store wire them together.

============================  ==============================================================
:mod:`.secret`                ``Secret``: values that print as ``**********``
:mod:`.errors`                the exception tree (one ``InvalidCredential`` for every 401)
:mod:`.headers`               the ``Authorization`` header: scheme and credential
:mod:`.tokens`                bearer JWTs: issue, verify (or emulate), the signing-key file
:mod:`.verification_keys`     HMAC, PEM and JWKS keys, each pinned to one algorithm
:mod:`.sas`                   APIM ``SharedAccessSignature``: make, parse, verify
:mod:`.encryption`            AES-256-GCM at rest, master keys, keyring rotation, check value
:mod:`.service_principals`    client ids and scrypt-hashed client secrets
:mod:`.authorization`         roles, scopes, ``Principal``, ``authorize``
:mod:`.limits`                failed-authentication limiter, token-bucket rate limiter
:mod:`.keyfiles`              0600 key files created once, race-free
============================  ==============================================================

Import from the submodules. This package's ``__init__`` deliberately imports nothing, so that
importing one block (say :mod:`.sas`) does not load PyJWT or cryptography into a process that
does not need them.
"""
