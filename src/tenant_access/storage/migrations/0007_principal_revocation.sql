-- Revocation of service principals: each replacement of a secret moves its generation, and the
-- tokens issued under an older generation are refused (see security/tokens.py, http/auth.py).
ALTER TABLE service_principals ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
