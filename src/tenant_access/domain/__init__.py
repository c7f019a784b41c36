"""The domain: pure Python rules for services, access configurations and their keys.

Nothing here imports a framework, a database driver or the HTTP layer, so the rules can be read
(and tested) on their own.
"""
