-- Accounts for token authentication: users, organizations with teams, robot accounts, grants on
-- repositories and repository visibility. Logins and token issuance only read these tables, so
-- they work while the registry is read-only; changing them is a write like any other.

-- A user owns the namespace of its name. Passwords are argon2id PHC strings.
CREATE TABLE users (
    name          TEXT    PRIMARY KEY,
    password_hash TEXT    NOT NULL,
    superuser     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- An organization owns the namespace of its name (which no user may have).
CREATE TABLE organizations (
    name       TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL
);

-- A team gives its members one role on every repository of its organization.
CREATE TABLE teams (
    organization TEXT NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    PRIMARY KEY (organization, name)
);

-- Members are users, or robots of the team's organization.
CREATE TABLE team_members (
    organization TEXT NOT NULL,
    team         TEXT NOT NULL,
    member       TEXT NOT NULL,
    PRIMARY KEY (organization, team, member),
    FOREIGN KEY (organization, team) REFERENCES teams (organization, name) ON DELETE CASCADE
);
CREATE INDEX team_members_by_member ON team_members (member);

-- Robot accounts (`organization+name`) authenticate with a token, of which only the SHA-256 is
-- kept. `admin` lets the robot use the admin API (an operator, a backup job).
CREATE TABLE robots (
    name         TEXT    PRIMARY KEY,
    organization TEXT    NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    token_hash   TEXT    NOT NULL,
    admin        INTEGER NOT NULL DEFAULT 0,
    description  TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX robots_by_organization ON robots (organization);

-- A role on one repository for a user or a robot; the repository need not exist yet.
CREATE TABLE repository_grants (
    repository TEXT NOT NULL,
    principal  TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    PRIMARY KEY (repository, principal)
);
CREATE INDEX repository_grants_by_principal ON repository_grants (principal);

-- Which repositories anyone may pull: a repository name, or `namespace/*` for everything under
-- it. The most specific rule wins; without one, a repository is private.
CREATE TABLE visibility (
    pattern TEXT    PRIMARY KEY,
    public  INTEGER NOT NULL
);
