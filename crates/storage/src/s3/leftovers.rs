//! Multipart uploads left open in the bucket: by a process killed during a monolithic upload
//! (whose multipart upload is known only to the request), or during a chunked one between
//! uploading a part and recording it. The garbage collector lists them by prefix and aborts
//! those whose session is gone.
//!
//! `object_store` 0.14 has no call that lists multipart uploads, so the listing is S3's
//! `ListMultipartUploads` request, presigned by the store (which holds the credentials) and
//! sent with the same HTTP client library; its XML answer holds nothing but keys, ids and
//! times, read here without a parser.

use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::signer::{SignedUrlOptions, Signer};

use super::S3Blobs;
use crate::StorageError;
use wharf_core::placement::StorageKey;

/// A multipart upload open in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMultipartUpload {
    /// The blob key it completes at.
    pub key: StorageKey,
    /// S3's id of it.
    pub id: String,
    /// When it was created, in milliseconds since the Unix epoch (`i64::MAX` if the server
    /// said it unreadably).
    pub initiated_millis: i64,
}

impl S3Blobs {
    /// Every multipart upload open under `blobs/` (keys of another form are not Wharf's and
    /// are left alone).
    pub(crate) async fn open_multipart_uploads(
        &self,
    ) -> Result<Vec<OpenMultipartUpload>, StorageError> {
        let prefix = format!("{}/", self.path("blobs"));
        let client = reqwest::Client::new();
        let mut found = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("uploads".to_owned(), String::new()),
                ("prefix".to_owned(), prefix.clone()),
            ];
            if let Some((key, id)) = &markers {
                query.push(("key-marker".to_owned(), key.clone()));
                query.push(("upload-id-marker".to_owned(), id.clone()));
            }
            let url = self
                .store
                .signed_url_opts(
                    http::Method::GET,
                    &ObjectPath::from(""),
                    Duration::from_secs(300),
                    &SignedUrlOptions::new().with_query(query),
                )
                .await?;
            let failed = |why: String| {
                StorageError::Io(std::io::Error::other(format!(
                    "listing the multipart uploads of S3 bucket {:?} failed: {why}",
                    self.bucket
                )))
            };
            let response = client
                .get(url)
                .send()
                .await
                .map_err(|e| failed(super::one_line(&e)))?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|e| failed(super::one_line(&e)))?;
            if !status.is_success() {
                return Err(failed(format!(
                    "{status}: {}",
                    element(&text, "Message").unwrap_or_default()
                )));
            }
            for upload in elements(&text, "Upload") {
                let (Some(key), Some(id)) = (element(upload, "Key"), element(upload, "UploadId"))
                else {
                    continue;
                };
                let Some(key) = self
                    .relative(&ObjectPath::from(key))
                    .and_then(|k| StorageKey::from_stored(k.to_owned()).ok())
                else {
                    continue;
                };
                // A time that does not parse counts as now: never old enough to abort.
                let initiated_millis = element(upload, "Initiated")
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or(i64::MAX, |t| t.timestamp_millis());
                found.push(OpenMultipartUpload {
                    key,
                    id: id.to_owned(),
                    initiated_millis,
                });
            }
            let truncated = element(&text, "IsTruncated") == Some("true");
            match (
                element(&text, "NextKeyMarker"),
                element(&text, "NextUploadIdMarker"),
            ) {
                (Some(key), Some(id)) if truncated => {
                    markers = Some((key.to_owned(), id.to_owned()))
                }
                _ => return Ok(found),
            }
        }
    }

    /// Aborts a multipart upload found open.
    pub(crate) async fn abort_open_multipart(
        &self,
        upload: &OpenMultipartUpload,
    ) -> Result<(), StorageError> {
        use object_store::multipart::MultipartStore;
        match self
            .store
            .abort_multipart(&self.path(upload.key.as_str()), &upload.id)
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The text of the first `<name>` element in `xml`.
pub(super) fn element<'x>(xml: &'x str, name: &str) -> Option<&'x str> {
    elements(xml, name).next()
}

/// The texts of the `<name>` elements in `xml`, in order.
fn elements<'x>(xml: &'x str, name: &str) -> impl Iterator<Item = &'x str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let end = start + rest[start..].find(&close)?;
        let inner = &rest[start..end];
        rest = &rest[end + close.len()..];
        Some(inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_read_in_order() {
        let xml = "<R><Upload><Key>a</Key><UploadId>1</UploadId></Upload>\
                   <Upload><Key>b</Key><UploadId>2</UploadId></Upload><IsTruncated>false</IsTruncated></R>";
        let uploads: Vec<_> = elements(xml, "Upload")
            .map(|u| (element(u, "Key"), element(u, "UploadId")))
            .collect();
        assert_eq!(uploads, [(Some("a"), Some("1")), (Some("b"), Some("2"))]);
        assert_eq!(element(xml, "IsTruncated"), Some("false"));
        assert_eq!(element(xml, "Missing"), None);
    }
}
