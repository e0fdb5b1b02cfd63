-- Accounts for token authentication: users, organizations with teams, robot accounts, grants on
-- repositories and repository visibility. Logins and token issuance only read these tables, so
-- they work while the registry is read-only; changing them is a write like any other.

-- A user owns the namespace of its name. Passwords are argon2id PHC strings.
CREATE TABLE users (
    name          TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT    NOT NULL,
    superuser     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

-- An organization owns the namespace of its name (which no user may have).
CREATE TABLE organizations (
    name       TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- A team gives its members one role on every repository of its organization.
CREATE TABLE teams (
    organization TEXT COLLATE "C" NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    name         TEXT COLLATE "C" NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    PRIMARY KEY (organization, name)
);

-- Members are users, or robots of the team's organization.
CREATE TABLE team_members (
    organization TEXT COLLATE "C" NOT NULL,
    team         TEXT COLLATE "C" NOT NULL,
    member       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (organization, team, member),
    FOREIGN KEY (organization, team) REFERENCES teams (organization, name) ON DELETE CASCADE
);
CREATE INDEX team_members_by_member ON team_members (member);

-- Robot accounts (`organization+name`) authenticate with a token, of which only the SHA-256 is
-- kept. `admin` lets the robot use the admin API (an operator, a backup job).
CREATE TABLE robots (
    name         TEXT COLLATE "C" PRIMARY KEY,
    organization TEXT COLLATE "C" NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    token_hash   TEXT    NOT NULL,
    admin        BOOLEAN NOT NULL DEFAULT FALSE,
    description  TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX robots_by_organization ON robots (organization);

-- A role on one repository for a user or a robot; the repository need not exist yet.
CREATE TABLE repository_grants (
    repository TEXT COLLATE "C" NOT NULL,
    principal  TEXT COLLATE "C" NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    PRIMARY KEY (repository, principal)
);
CREATE INDEX repository_grants_by_principal ON repository_grants (principal);

-- Which repositories anyone may pull: a repository name, or `namespace/*` for everything under
-- it. The most specific rule wins; without one, a repository is private.
CREATE TABLE visibility (
    pattern TEXT COLLATE "C" PRIMARY KEY,
    public  BOOLEAN NOT NULL
);
