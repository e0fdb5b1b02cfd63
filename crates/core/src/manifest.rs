//! Manifest documents: the media types Wharf stores, and parsing a pushed manifest to validate it
//! and find what it refers to (blobs, child manifests, its subject).
//!
//! Only the fields the registry needs are read; everything else in the document, known or not,
//! is kept byte for byte, since the manifest's digest is over its exact bytes.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest media type Wharf stores.
pub const SUPPORTED_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// What a valid manifest refers to, and what the referrers API shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The manifest's media type.
    pub media_type: String,
    /// Blobs it refers to (config and layers), each once, in order of appearance.
    pub blobs: Vec<Descriptor>,
    /// Manifests it refers to (an index's entries), each once.
    pub manifests: Vec<Descriptor>,
    /// Its `artifactType`, or for an image manifest without one, its config's media type.
    pub artifact_type: Option<String>,
    /// The digest of its subject, if it has one.
    pub subject: Option<Digest>,
    /// Its annotations, re-serialised as a JSON object, if it has any.
    pub annotations: Option<String>,
}

/// Content a manifest refers to: its digest and the size the manifest declares for it, which the
/// specification requires to match the content exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Descriptor {
    /// The content's digest.
    pub digest: Digest,
    /// Its declared size in bytes.
    pub size: u64,
}

impl std::fmt::Display for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.digest.fmt(f)
    }
}

/// Why a manifest is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifest: {0}")]
pub struct ManifestError(pub String);

fn invalid(why: impl Into<String>) -> ManifestError {
    ManifestError(why.into())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    schema_version: Option<i64>,
    media_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageManifest {
    artifact_type: Option<String>,
    config: RawDescriptor,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageIndex {
    artifact_type: Option<String>,
    manifests: Vec<RawDescriptor>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Parses and validates a pushed manifest. `content_type` is the request's `Content-Type`; the
/// document's own `mediaType`, when present, must agree with it.
pub fn parse(content: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    let envelope: Envelope =
        serde_json::from_slice(content).map_err(|e| invalid(format!("not a JSON object: {e}")))?;
    if envelope.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let content_type = content_type.map(media_type_essence);
    let media_type = match (envelope.media_type.as_deref(), content_type) {
        (Some(declared), Some(header)) if declared != header => {
            return Err(invalid(format!(
                "the document's mediaType {declared:?} differs from the Content-Type {header:?}"
            )));
        }
        (Some(declared), _) => declared.to_owned(),
        (None, Some(header)) => header.to_owned(),
        (None, None) => {
            return Err(invalid(
                "no mediaType in the document and no Content-Type header",
            ));
        }
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let manifest: ImageManifest = serde_json::from_slice(content)
                .map_err(|e| invalid(format!("not a valid image manifest: {e}")))?;
            let config = descriptor(&manifest.config, "config")?;
            let mut blobs = vec![config];
            for layer in &manifest.layers {
                let digest = descriptor(layer, "layer")?;
                // Foreign layers live at their URLs, not in the registry.
                if layer.urls.as_ref().is_some_and(|urls| !urls.is_empty()) {
                    continue;
                }
                blobs.push(digest);
            }
            let artifact_type = manifest
                .artifact_type
                .or_else(|| Some(manifest.config.media_type.clone()));
            Ok(ParsedManifest {
                media_type,
                blobs: dedup(blobs)?,
                manifests: Vec::new(),
                artifact_type,
                subject: subject_digest(manifest.subject.as_ref())?,
                annotations: annotations_json(manifest.annotations),
            })
        }
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            let index: ImageIndex = serde_json::from_slice(content)
                .map_err(|e| invalid(format!("not a valid image index: {e}")))?;
            let manifests = index
                .manifests
                .iter()
                .map(|d| descriptor(d, "manifests entry"))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ParsedManifest {
                media_type,
                blobs: Vec::new(),
                manifests: dedup(manifests)?,
                artifact_type: index.artifact_type,
                subject: subject_digest(index.subject.as_ref())?,
                annotations: annotations_json(index.annotations),
            })
        }
        other => Err(invalid(format!(
            "unsupported manifest media type {other:?}; supported: {}",
            SUPPORTED_MEDIA_TYPES.join(", ")
        ))),
    }
}

fn descriptor(raw: &RawDescriptor, what: &str) -> Result<Descriptor, ManifestError> {
    let size = u64::try_from(raw.size)
        .map_err(|_| invalid(format!("{what} descriptor has a negative size")))?;
    if raw.media_type.is_empty() {
        return Err(invalid(format!("{what} descriptor has no mediaType")));
    }
    let digest = raw
        .digest
        .parse()
        .map_err(|e| invalid(format!("{what} descriptor: {e}")))?;
    Ok(Descriptor { digest, size })
}

fn subject_digest(subject: Option<&RawDescriptor>) -> Result<Option<Digest>, ManifestError> {
    subject
        .map(|d| descriptor(d, "subject").map(|d| d.digest))
        .transpose()
}

fn annotations_json(annotations: Option<BTreeMap<String, String>>) -> Option<String> {
    annotations
        .filter(|a| !a.is_empty())
        .and_then(|a| serde_json::to_string(&a).ok())
}

/// Each content once. Two descriptors of one digest must agree on its size: one of them is wrong.
fn dedup(descriptors: Vec<Descriptor>) -> Result<Vec<Descriptor>, ManifestError> {
    let mut sizes = std::collections::HashMap::new();
    let mut unique = Vec::with_capacity(descriptors.len());
    for descriptor in descriptors {
        match sizes.get(&descriptor.digest) {
            None => {
                sizes.insert(descriptor.digest.clone(), descriptor.size);
                unique.push(descriptor);
            }
            Some(&size) if size == descriptor.size => {}
            Some(&size) => {
                return Err(invalid(format!(
                    "two descriptors of {} declare different sizes ({size} and {} bytes)",
                    descriptor.digest, descriptor.size
                )));
            }
        }
    }
    Ok(unique)
}

/// The media type without parameters (`application/json; charset=utf-8` → `application/json`).
pub fn media_type_essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or_default().trim()
}

/// Whether a request's `Accept` values allow a manifest of `media_type`. No `Accept` at all, or
/// a wildcard, allows anything; a client that lists only other manifest types gets none.
pub fn is_acceptable<'a>(accept: impl IntoIterator<Item = &'a str>, media_type: &str) -> bool {
    let mut listed_any = false;
    for value in accept {
        for item in value.split(',') {
            let item = media_type_essence(item);
            if item.is_empty() {
                continue;
            }
            listed_any = true;
            if item == media_type || item == "*/*" || item == "application/*" {
                return true;
            }
        }
    }
    !listed_any
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn digest(n: u8) -> String {
        Digest::sha256_of(&[n]).to_string()
    }

    fn image(media_type_field: Option<&str>, extra: &str) -> Vec<u8> {
        let mt = media_type_field
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3}}]{extra}}}"#,
            digest(1),
            digest(2),
            digest(2)
        )
        .into_bytes()
    }

    #[test]
    fn image_manifest_references() {
        let parsed = parse(&image(Some(OCI_MANIFEST), ""), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(parsed.media_type, OCI_MANIFEST);
        assert_eq!(
            parsed
                .blobs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![digest(1), digest(2)],
            "config first, duplicate layers once"
        );
        assert_eq!(
            parsed.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(parsed.subject, None);
    }

    #[test]
    fn media_type_from_header_when_absent_and_must_agree_when_present() {
        assert_eq!(
            parse(
                &image(None, ""),
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
            )
            .unwrap()
            .media_type,
            OCI_MANIFEST
        );
        assert!(parse(&image(Some(OCI_MANIFEST), ""), Some(DOCKER_MANIFEST)).is_err());
        assert!(parse(&image(None, ""), None).is_err());
        assert!(parse(&image(Some(OCI_MANIFEST), ""), None).is_ok());
    }

    #[test]
    fn subject_annotations_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/x-sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":7}},"annotations":{{"a":"b"}}"#,
            digest(9)
        );
        let parsed = parse(&image(Some(OCI_MANIFEST), &extra), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(parsed.artifact_type.as_deref(), Some("application/x-sig"));
        assert_eq!(parsed.subject.map(|d| d.to_string()), Some(digest(9)));
        assert_eq!(parsed.annotations.as_deref(), Some(r#"{"a":"b"}"#));
    }

    #[test]
    fn index_references_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            digest(4)
        );
        let parsed = parse(body.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(
            parsed
                .manifests
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![digest(4)]
        );
        assert_eq!(parsed.manifests[0].size, 5);
        assert!(parsed.blobs.is_empty());
    }

    #[test]
    fn descriptors_of_one_digest_must_agree_on_its_size() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"c","digest":"{}","size":2}},"layers":[{{"mediaType":"l","digest":"{}","size":3}},{{"mediaType":"l","digest":"{}","size":4}}]}}"#,
            digest(1),
            digest(2),
            digest(2)
        );
        let error = parse(body.as_bytes(), Some(OCI_MANIFEST)).unwrap_err();
        assert!(error.0.contains("different sizes"), "{error}");
    }

    #[test]
    fn rejects_invalid_documents() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), OCI_MANIFEST),
            (b"blablabla".to_vec(), OCI_MANIFEST),
            (b"[]".to_vec(), OCI_MANIFEST),
            (br#"{"schemaVersion":1}"#.to_vec(), OCI_MANIFEST),
            (br#"{"schemaVersion":2}"#.to_vec(), OCI_MANIFEST),
            (
                br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(),
                OCI_MANIFEST,
            ),
            (
                br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:bad","size":1}}"#
                    .to_vec(),
                OCI_MANIFEST,
            ),
            (
                image(None, ""),
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            ),
            (image(None, ""), "text/plain"),
        ];
        for (body, content_type) in cases {
            assert!(
                parse(&body, Some(content_type)).is_err(),
                "{} as {content_type}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn foreign_layers_are_not_required() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{}","size":1}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":1,"urls":["https://example.com/layer"]}}]}}"#,
            digest(1),
            digest(2)
        );
        let parsed = parse(body.as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(parsed.blobs.len(), 1);
    }

    #[test]
    fn accept_negotiation() {
        assert!(is_acceptable([], OCI_MANIFEST));
        assert!(is_acceptable(["*/*"], OCI_MANIFEST));
        assert!(is_acceptable([DOCKER_MANIFEST, OCI_MANIFEST], OCI_MANIFEST));
        assert!(is_acceptable(
            [format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5").as_str()],
            OCI_MANIFEST
        ));
        assert!(!is_acceptable([DOCKER_MANIFEST], OCI_MANIFEST));
        assert!(!is_acceptable(
            [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST],
            OCI_INDEX
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, Some(OCI_MANIFEST));
            let _ = parse(&bytes, Some(OCI_INDEX));
        }

        #[test]
        fn arbitrary_json_never_panics(json in "\\{(\"[a-zA-Z]{1,12}\":(\"[^\"]{0,20}\"|[0-9]{1,4}|null|\\[\\]|\\{\\}),?){0,6}\\}") {
            let _ = parse(json.as_bytes(), Some(OCI_MANIFEST));
            let _ = parse(json.as_bytes(), None);
        }
    }
}
