//! The admin credential the operator logs in to the registry with.
//!
//! Wharf creates its first superuser, `admin`, at its first start with the password in
//! `WHARF_ADMIN_PASSWORD` (docs/auth.md): the operator generates that password once, keeps it
//! in a Secret it owns and gives it to the pods from there, so it is the one credential the
//! registry accepts from outside without an API write (a robot's token, by contrast, is made by
//! a write the registry refuses while read-only, and shown only once). A generated password is
//! never replaced: the Secret is applied again with the value it holds. A database whose first
//! superuser already exists (PostgreSQL shared with another install) needs `spec.auth.
//! adminSecret` with the `username` and `password` of an administrator (an admin robot).

use std::collections::BTreeMap;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use crate::FIELD_MANAGER;
use crate::crd::WharfRegistry;
use crate::error::Error;
use crate::registry_api::AdminCredentials;
use crate::render::{ADMIN_USER, Names, PASSWORD_KEY, USERNAME_KEY, labels};

/// Makes sure the operator's Secret exists (generating its password the first time) and answers
/// the credentials to log in with.
pub async fn ensure(
    secrets: &Api<Secret>,
    registry: &WharfRegistry,
    names: &Names,
) -> Result<AdminCredentials, Error> {
    if let Some(given) = &registry.spec.auth.admin_secret {
        let secret = secrets.get(given).await.map_err(|e| {
            Error::Credentials(format!("cannot read spec.auth.adminSecret {given}: {e}"))
        })?;
        return Ok(AdminCredentials {
            username: key(&secret, USERNAME_KEY, given)?,
            password: key(&secret, PASSWORD_KEY, given)?,
        });
    }
    let existing = secrets.get_opt(&names.credentials).await?;
    let password = match existing
        .as_ref()
        .and_then(|s| key(s, PASSWORD_KEY, &names.credentials).ok())
    {
        Some(password) => password,
        None => generate_password()?,
    };
    let owner = registry
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Credentials("the resource has no uid".to_owned()))?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(names.credentials.clone()),
            namespace: registry.namespace(),
            labels: Some(labels(&names.registry)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (
                USERNAME_KEY.to_owned(),
                ByteString(ADMIN_USER.as_bytes().to_vec()),
            ),
            (
                PASSWORD_KEY.to_owned(),
                ByteString(password.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    };
    secrets
        .patch(
            &names.credentials,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(AdminCredentials {
        username: ADMIN_USER.to_owned(),
        password,
    })
}

/// The credentials to log in with, without creating anything (for the deletion's clean-up).
pub async fn read(
    secrets: &Api<Secret>,
    registry: &WharfRegistry,
    names: &Names,
) -> Result<AdminCredentials, Error> {
    let name = registry
        .spec
        .auth
        .admin_secret
        .as_deref()
        .unwrap_or(&names.credentials);
    let secret = secrets
        .get(name)
        .await
        .map_err(|e| Error::Credentials(format!("cannot read the Secret {name}: {e}")))?;
    Ok(AdminCredentials {
        username: key(&secret, USERNAME_KEY, name)?,
        password: key(&secret, PASSWORD_KEY, name)?,
    })
}

fn key(secret: &Secret, key: &str, name: &str) -> Result<String, Error> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| Error::Credentials(format!("the Secret {name} has no key {key}")))?;
    String::from_utf8(bytes.0.clone())
        .map_err(|_| Error::Credentials(format!("the key {key} of the Secret {name} is not text")))
}

/// 32 random bytes as URL-safe text: too long to guess, and one line as Wharf requires.
fn generate_password() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Credentials("the system's random source failed".to_owned()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
