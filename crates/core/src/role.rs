//! Roles on repositories and the actions they allow: the vocabulary of permissions, shared by
//! the account store (which keeps grants) and authentication (which checks them).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pull.
    Read,
    /// Pull, push and delete.
    Write,
    /// Write, and manage the repository's grants and visibility.
    Admin,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// Whether the role allows `action`.
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Pull => true,
            Action::Push | Action::Delete => self >= Role::Write,
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role {s:?}: use read, write or admin")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request does to a repository, as scopes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read: manifests, blobs, tags, referrers.
    Pull,
    /// Write: uploads, manifests, tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The action's name in scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_they_say() {
        assert!(Role::Read.allows(Action::Pull));
        assert!(!Role::Read.allows(Action::Push));
        assert!(!Role::Read.allows(Action::Delete));
        assert!(Role::Write.allows(Action::Delete));
        assert!(Role::Admin.allows(Action::Push));
        assert!(Role::Admin > Role::Write && Role::Write > Role::Read);
        assert_eq!("write".parse::<Role>(), Ok(Role::Write));
        assert!("owner".parse::<Role>().is_err());
    }
}
