//! `storage.s3`: blobs in an S3-compatible bucket. The file names the keys' files, never the
//! keys themselves, so the configuration (printed by `wharf config check`, logged on a reload)
//! holds no secret; the keys are read when the store is built and live only in
//! [`wharf_registry`]'s storage, whose `Debug` redacts them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ByteSize, ConfigError, HumanDuration};
use wharf_storage::s3::{MAX_PART_SIZE, MIN_PART_SIZE};
use wharf_storage::{S3Credentials, S3Settings};

/// Where blobs are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// In the data folder's `storage/`.
    #[default]
    Filesystem,
    /// In the bucket of `storage.s3`.
    S3,
}

/// An S3-compatible bucket for blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The folder inside the bucket; empty for its top.
    pub prefix: String,
    /// The bucket's region.
    pub region: String,
    /// The S3 API's URL for stores other than AWS; `null` for AWS.
    pub endpoint: Option<String>,
    /// Address the bucket as a path of the endpoint (MinIO, Ceph) instead of a host name.
    pub path_style: bool,
    /// Allow an `http://` endpoint.
    pub allow_http: bool,
    /// A file holding the access key id; `null` for the environment's credentials.
    pub access_key_id_file: Option<PathBuf>,
    /// A file holding the secret access key; goes with `access_key_id_file`.
    pub secret_access_key_file: Option<PathBuf>,
    /// The size of an upload's parts (every one but the last).
    pub part_size: ByteSize,
    /// Answer blob downloads with a redirect to a presigned URL instead of streaming them.
    pub redirect: bool,
    /// How long a presigned download URL is valid.
    pub redirect_expiry: HumanDuration,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".to_owned(),
            endpoint: None,
            path_style: false,
            allow_http: false,
            access_key_id_file: None,
            secret_access_key_file: None,
            part_size: ByteSize(8 * 1024 * 1024),
            redirect: false,
            redirect_expiry: HumanDuration(std::time::Duration::from_secs(300)),
        }
    }
}

fn invalid(message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid configuration: {message}"))
}

impl S3Config {
    /// Checks the settings (with `storage.backend: s3`).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(invalid(format!(
                "storage.s3.bucket must be a bucket name (3 to 63 lowercase letters, digits, dots \
                 and hyphens) with storage.backend s3; got {:?}",
                self.bucket
            )));
        }
        if self.prefix.starts_with('/')
            || self.prefix.ends_with('/')
            || self
                .prefix
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
                && !self.prefix.is_empty()
        {
            return Err(invalid(format!(
                "storage.s3.prefix must be a folder such as wharf or registry/prod, without a \
                 slash at either end; got {:?}",
                self.prefix
            )));
        }
        if self.region.trim().is_empty() {
            return Err(invalid("storage.s3.region is empty"));
        }
        if let Some(endpoint) = &self.endpoint {
            let http = endpoint.starts_with("http://");
            if !(http || endpoint.starts_with("https://")) {
                return Err(invalid(format!(
                    "storage.s3.endpoint must be an http(s) URL such as https://s3.example.com; \
                     got {endpoint:?}"
                )));
            }
            if http && !self.allow_http {
                return Err(invalid(format!(
                    "storage.s3.endpoint {endpoint:?} is plain HTTP: set storage.s3.allow_http \
                     to true to allow it"
                )));
            }
        }
        if self.access_key_id_file.is_some() != self.secret_access_key_file.is_some() {
            return Err(invalid(
                "storage.s3.access_key_id_file and secret_access_key_file go together; give \
                 both, or neither (for the environment's credentials)",
            ));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size.0) {
            return Err(invalid(format!(
                "storage.s3.part_size must be between 5MiB and 5GiB (S3's limits); got {}",
                self.part_size
            )));
        }
        if self.redirect_expiry.0 < std::time::Duration::from_secs(1)
            || self.redirect_expiry.0 > std::time::Duration::from_secs(7 * 24 * 3600)
        {
            return Err(invalid(format!(
                "storage.s3.redirect_expiry must be between 1s and 7d (S3's limit); got {}",
                self.redirect_expiry
            )));
        }
        Ok(())
    }

    /// The storage settings, with the keys read from their files. An error names the file,
    /// never what is in it.
    pub fn settings(&self) -> Result<S3Settings, ConfigError> {
        let credentials = match (&self.access_key_id_file, &self.secret_access_key_file) {
            (Some(id), Some(secret)) => Some(S3Credentials {
                access_key_id: read_key(id, "access_key_id_file")?,
                secret_access_key: read_key(secret, "secret_access_key_file")?,
            }),
            _ => None,
        };
        Ok(S3Settings {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            path_style: self.path_style,
            allow_http: self.allow_http,
            credentials,
            part_size: self.part_size.0,
            redirect: self.redirect.then_some(self.redirect_expiry.0),
        })
    }
}

fn read_key(path: &std::path::Path, key: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read storage.s3.{key} {}: {}",
            path.display(),
            e.kind()
        ))
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(ConfigError(format!(
            "storage.s3.{key} {} is empty",
            path.display()
        )));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn s3(yaml: &str) -> Result<Config, String> {
        Config::from_yaml(&format!("storage:\n  backend: s3\n  s3:\n{yaml}")).map_err(|e| e.0)
    }

    #[test]
    fn an_s3_configuration_is_checked_with_a_message_per_mistake() {
        let ok = "    bucket: registry-blobs\n    prefix: prod/wharf\n";
        let config = s3(ok).unwrap();
        assert_eq!(config.storage.s3.bucket, "registry-blobs");
        for (yaml, says) in [
            ("    prefix: x\n", "storage.s3.bucket must be a bucket name"),
            (
                "    bucket: Bad_Bucket\n",
                "storage.s3.bucket must be a bucket name",
            ),
            (
                "    bucket: b-1\n    prefix: /x\n",
                "storage.s3.prefix must be a folder",
            ),
            (
                "    bucket: b-1\n    prefix: a//b\n",
                "storage.s3.prefix must be a folder",
            ),
            (
                "    bucket: b-1\n    endpoint: ftp://x\n",
                "storage.s3.endpoint must be an http(s) URL",
            ),
            (
                "    bucket: b-1\n    endpoint: http://127.0.0.1:9000\n",
                "set storage.s3.allow_http",
            ),
            (
                "    bucket: b-1\n    access_key_id_file: /k\n",
                "access_key_id_file and secret_access_key_file go together",
            ),
            (
                "    bucket: b-1\n    part_size: 1MiB\n",
                "between 5MiB and 5GiB",
            ),
            (
                "    bucket: b-1\n    redirect_expiry: 8d\n",
                "between 1s and 7d",
            ),
        ] {
            let error = s3(yaml).unwrap_err();
            assert!(error.contains(says), "{yaml:?}: {error}");
        }
        // Unchecked while the file system keeps the blobs.
        assert!(Config::from_yaml("storage:\n  s3:\n    part_size: 1MiB\n").is_ok());
    }

    /// Keys come from files; a missing or empty file is named, and nothing read from a file
    /// shows in the settings' `Debug`.
    #[test]
    fn credentials_are_read_from_files_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let (id, secret) = (dir.path().join("id"), dir.path().join("secret"));
        std::fs::write(&id, "AKIDEXAMPLE\n").unwrap();
        std::fs::write(&secret, "very-secret-key\n").unwrap();
        let yaml = format!(
            "    bucket: b-1\n    access_key_id_file: {}\n    secret_access_key_file: {}\n",
            id.display(),
            secret.display()
        );
        let config = s3(&yaml).unwrap();
        let settings = config.storage.s3.settings().unwrap();
        let credentials = settings.credentials.as_ref().unwrap();
        assert_eq!(
            (
                credentials.access_key_id.as_str(),
                credentials.secret_access_key.as_str()
            ),
            ("AKIDEXAMPLE", "very-secret-key")
        );
        let shown = format!("{settings:?} {config:?}");
        assert!(
            !shown.contains("very-secret-key") && !shown.contains("AKIDEXAMPLE"),
            "{shown}"
        );

        std::fs::write(&secret, "  \n").unwrap();
        let error = config.storage.s3.settings().unwrap_err().0;
        assert!(
            error.contains("secret_access_key_file") && error.contains("is empty"),
            "{error}"
        );
        std::fs::remove_file(&secret).unwrap();
        let error = config.storage.s3.settings().unwrap_err().0;
        assert!(error.contains(&secret.display().to_string()), "{error}");
    }
}
