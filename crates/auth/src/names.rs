//! Account names. User and organization names are namespaces (`alice/app`), so each must be a
//! valid first part of a repository name; robot names are `organization+name`.

use wharf_core::reference::is_path_component;

/// The longest user, organization, team or robot part of a name.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a user, organization or team name.
pub fn check_account_name(name: &str, what: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN || !is_path_component(name) {
        return Err(format!(
            "invalid {what} name {name:?}: use 1 to {MAX_NAME_LEN} lowercase letters and digits, \
             joined by '.', '_' or '-'"
        ));
    }
    Ok(())
}

/// Checks a robot name (`organization+name`); returns its organization.
pub fn robot_organization(name: &str) -> Result<&str, String> {
    let (organization, robot) = name.split_once('+').ok_or_else(|| {
        format!("invalid robot name {name:?}: write it organization+name, such as acme+ci")
    })?;
    check_account_name(organization, "organization")?;
    check_account_name(robot, "robot")?;
    Ok(organization)
}

/// Checks a visibility pattern: a repository name, or `namespace/*`.
pub fn check_visibility_pattern(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_suffix("/*").unwrap_or(pattern);
    name.parse::<wharf_core::reference::RepositoryName>()
        .map(|_| ())
        .map_err(|e| {
            format!("invalid visibility pattern {pattern:?}: {e}; give a repository or namespace/*")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_account_name("alice", "user").is_ok());
        assert!(check_account_name("team-1.x", "team").is_ok());
        for bad in ["", "Alice", "a/b", "a+b", "-a", "../x", &"a".repeat(65)] {
            assert!(check_account_name(bad, "user").is_err(), "{bad}");
        }
        assert_eq!(robot_organization("acme+ci"), Ok("acme"));
        for bad in ["acme", "acme+", "+ci", "acme+c+i", "Acme+ci", "acme/x+ci"] {
            assert!(robot_organization(bad).is_err(), "{bad}");
        }
        assert!(check_visibility_pattern("library/*").is_ok());
        assert!(check_visibility_pattern("library/alpine").is_ok());
        assert!(check_visibility_pattern("*").is_err());
        assert!(check_visibility_pattern("library/*/x").is_err());
    }
}
