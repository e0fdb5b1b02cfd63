//! What one caller may do: [`Permissions`], from its account, its teams, its grants and the
//! repositories' visibility.
//!
//! A role on a repository comes from, in order of strength (the strongest wins):
//! - being a superuser (admin everywhere);
//! - owning the namespace: a user is admin of every `username/...` repository;
//! - a team of the organization that owns the namespace (`org/...`);
//! - a grant on the repository itself;
//! - the repository being public: everyone may pull it, anonymous callers included.

use std::collections::HashMap;

use super::Principal;
use wharf_core::role::{Action, Role};
use wharf_metadata::accounts::VisibilityRule;
use wharf_metadata::{MetadataStore, Result};

/// What one caller may do. Loaded per request (or per token issued): changes to accounts apply
/// at once.
#[derive(Debug, Clone)]
pub struct Permissions {
    principal: Principal,
    /// Everything: a superuser, or the local administrator when authentication is off.
    unrestricted: bool,
    /// May use the admin API: superusers and admin robots.
    registry_admin: bool,
    /// The namespace the caller owns (a user's name).
    namespace: Option<String>,
    /// The strongest role the caller's teams give in each organization.
    organizations: HashMap<String, Role>,
    /// The caller's grants, by repository.
    grants: HashMap<String, Role>,
    visibility: Vec<VisibilityRule>,
}

impl Permissions {
    /// Everything, for the trusted local caller of a registry without authentication.
    pub fn unrestricted(principal: Principal) -> Permissions {
        Permissions {
            principal,
            unrestricted: true,
            registry_admin: true,
            namespace: None,
            organizations: HashMap::new(),
            grants: HashMap::new(),
            visibility: Vec::new(),
        }
    }

    /// Loads what `principal` may do. An account that no longer exists may do what anonymous
    /// callers may.
    pub async fn load(store: &dyn MetadataStore, principal: &Principal) -> Result<Permissions> {
        let visibility = store.visibility_rules().await?;
        let mut permissions = Permissions {
            principal: principal.clone(),
            unrestricted: false,
            registry_admin: false,
            namespace: None,
            organizations: HashMap::new(),
            grants: HashMap::new(),
            visibility,
        };
        let name = match principal {
            Principal::Anonymous => return Ok(permissions),
            Principal::User(name) => {
                let Some(user) = store.user(name).await? else {
                    return Ok(permissions);
                };
                permissions.unrestricted = user.superuser;
                permissions.registry_admin = user.superuser;
                permissions.namespace = Some(user.name);
                name
            }
            Principal::Robot(name) => {
                let Some(robot) = store.robot(name).await? else {
                    return Ok(permissions);
                };
                permissions.registry_admin = robot.admin;
                name
            }
        };
        for (organization, role) in store.team_roles(name).await? {
            let strongest = permissions
                .organizations
                .entry(organization)
                .or_insert(role);
            *strongest = (*strongest).max(role);
        }
        permissions.grants = store
            .grants_of(name)
            .await?
            .into_iter()
            .map(|grant| (grant.repository, grant.role))
            .collect();
        Ok(permissions)
    }

    /// Who this is.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Whether the caller may use the admin API (and manage every account).
    pub fn is_registry_admin(&self) -> bool {
        self.registry_admin
    }

    /// Whether the caller may manage an organization's teams and robots.
    pub fn administers_organization(&self, organization: &str) -> bool {
        self.registry_admin
            || self.unrestricted
            || self.organizations.get(organization) == Some(&Role::Admin)
    }

    /// Whether the caller is this user or robot.
    pub fn is(&self, name: &str) -> bool {
        self.principal.name() == Some(name)
    }

    /// The caller's role on a repository (or on every repository of a `namespace/*` pattern),
    /// if any.
    pub fn role_on(&self, repository: &str) -> Option<Role> {
        if self.unrestricted {
            return Some(Role::Admin);
        }
        let namespace = repository.split_once('/').map(|(namespace, _)| namespace);
        let owned = namespace
            .filter(|ns| self.namespace.as_deref() == Some(*ns))
            .map(|_| Role::Admin);
        let team = namespace.and_then(|ns| self.organizations.get(ns).copied());
        let granted = self.grants.get(repository).copied();
        let public = is_public(&self.visibility, repository).then_some(Role::Read);
        [owned, team, granted, public].into_iter().flatten().max()
    }

    /// Whether the caller may do `action` on `repository`.
    pub fn allows(&self, repository: &str, action: Action) -> bool {
        self.role_on(repository)
            .is_some_and(|role| role.allows(action))
    }
}

/// Whether a repository is public under `rules`: the rule naming it, else the rule of its
/// nearest enclosing `namespace/*`, else private.
pub fn is_public(rules: &[VisibilityRule], repository: &str) -> bool {
    if let Some(rule) = rules.iter().find(|rule| rule.pattern == repository) {
        return rule.public;
    }
    rules
        .iter()
        .filter_map(|rule| {
            let prefix = rule.pattern.strip_suffix("/*")?;
            let rest = repository.strip_prefix(prefix)?;
            rest.starts_with('/').then_some((prefix.len(), rule.public))
        })
        .max_by_key(|(length, _)| *length)
        .is_some_and(|(_, public)| public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, public: bool) -> VisibilityRule {
        VisibilityRule {
            pattern: pattern.to_owned(),
            public,
        }
    }

    #[test]
    fn the_most_specific_visibility_rule_wins() {
        let rules = [
            rule("lib/*", true),
            rule("lib/secret/*", false),
            rule("lib/secret/open", true),
        ];
        assert!(is_public(&rules, "lib/alpine"));
        assert!(is_public(&rules, "lib/a/b"));
        assert!(!is_public(&rules, "lib/secret/x"));
        assert!(is_public(&rules, "lib/secret/open"));
        assert!(
            !is_public(&rules, "library/alpine"),
            "a prefix must end at a /"
        );
        assert!(
            !is_public(&rules, "lib"),
            "lib/* covers what is under lib/, not lib"
        );
        assert!(!is_public(&rules, "other/x"));
        assert!(!is_public(&[], "x"));
    }

    fn permissions(
        namespace: Option<&str>,
        organizations: &[(&str, Role)],
        grants: &[(&str, Role)],
    ) -> Permissions {
        Permissions {
            principal: Principal::User("u".to_owned()),
            unrestricted: false,
            registry_admin: false,
            namespace: namespace.map(str::to_owned),
            organizations: organizations
                .iter()
                .map(|(o, r)| ((*o).to_owned(), *r))
                .collect(),
            grants: grants.iter().map(|(g, r)| ((*g).to_owned(), *r)).collect(),
            visibility: vec![rule("pub/*", true)],
        }
    }

    #[test]
    fn the_strongest_role_wins() {
        let p = permissions(
            Some("alice"),
            &[("acme", Role::Read)],
            &[("acme/app", Role::Write), ("pub/x", Role::Admin)],
        );
        assert_eq!(p.role_on("alice/app"), Some(Role::Admin));
        assert_eq!(
            p.role_on("alice"),
            None,
            "the namespace is what is under alice/"
        );
        assert_eq!(p.role_on("acme/other"), Some(Role::Read));
        assert_eq!(p.role_on("acme/app"), Some(Role::Write));
        assert_eq!(p.role_on("pub/y"), Some(Role::Read));
        assert_eq!(p.role_on("pub/x"), Some(Role::Admin));
        assert_eq!(p.role_on("bob/app"), None);
        assert!(p.allows("acme/app", Action::Delete));
        assert!(!p.allows("acme/other", Action::Push));
        assert!(!p.administers_organization("acme"));
        let admin = permissions(None, &[("acme", Role::Admin)], &[]);
        assert!(admin.administers_organization("acme"));
        assert!(!admin.is_registry_admin());
    }
}
