-- Users signed in from an identity provider: the provider's issuer and the subject there.
-- Both null for users created by an operator; unique together, so one subject is one user.
ALTER TABLE users ADD COLUMN issuer TEXT;
ALTER TABLE users ADD COLUMN subject TEXT;
CREATE UNIQUE INDEX users_identity_idx ON users (issuer, subject);
