//! The suite's test data, generated once before any spec runs (`init()` in `setup.go`).

use std::collections::HashMap;

use wharf_core::digest::Digest;

use crate::gojson::{J, base64_decode};

pub const TEST_TAG_NAME: &str = "tagtest0";
pub const EMPTY_LAYER_TEST_TAG: &str = "emptylayer";
pub const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
pub const INVALID_MANIFEST_CONTENT: &[u8] = b"blablabla";
pub const ARTIFACT_TYPE_FILTER: &str = "artifactType";
pub const TEST_ANNOTATION_KEY: &str = "org.opencontainers.conformance.test";
pub const TEST_REF_ARTIFACT_TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
pub const TEST_REF_ARTIFACT_TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";
pub const TEST_REF_ARTIFACT_TYPE_INDEX: &str = "application/vnd.food.stand";
pub const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// `numWorkflows`: 16, because of `1 << iota` in the suite's constant block.
const NUM_WORKFLOWS: usize = 16;

/// A gzipped tarball holding `test.txt` (168 bytes once decoded), the suite's one layer blob.
const LAYER_BASE64: &str = concat!(
    "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0",
    "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD",
    "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA",
);

/// The `errorCodes` slice. Because the Go constants share `iota` with the workflow bits, the
/// slice starts with five empty strings, so an empty (or missing) `code` is "contained" too.
pub const ERROR_CODES: &[&str] = &[
    "",
    "",
    "",
    "",
    "",
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];

/// `errorCodes[UNSUPPORTED]`.
pub const UNSUPPORTED: &str = "UNSUPPORTED";

/// The suite's configuration (environment variables, §3), fixed to the suite's defaults with
/// all four workflows enabled.
#[derive(Debug, Clone)]
pub struct Config {
    /// `OCI_NAMESPACE`.
    pub namespace: String,
    /// `OCI_CROSSMOUNT_NAMESPACE` (default `conformance-<uuid v4>`).
    pub crossmount_namespace: String,
    /// The `OCI_TEST_*` bits.
    pub tests_to_run: u8,
    /// `OCI_DELETE_MANIFEST_BEFORE_BLOBS` (default true).
    pub delete_manifest_before_blobs: bool,
    /// Whether `OCI_AUTOMATIC_CROSSMOUNT` is set at all.
    pub run_automatic_crossmount_test: bool,
    /// Its boolean value.
    pub automatic_crossmount_enabled: bool,
    /// `OCI_TAG_NAME`, `OCI_MANIFEST_DIGEST`, `OCI_BLOB_DIGEST`, `OCI_TAG_LIST` ("" = unset).
    pub tag_name: String,
    pub manifest_digest: String,
    pub blob_digest: String,
    pub tag_list: String,
}

pub const PULL: u8 = 1;
pub const PUSH: u8 = 2;
pub const CONTENT_DISCOVERY: u8 = 4;
pub const CONTENT_MANAGEMENT: u8 = 8;

impl Config {
    pub fn defaults(rng: &mut Rng) -> Config {
        Config {
            namespace: "conformance/test".to_owned(),
            crossmount_namespace: format!("conformance-{}", rng.uuid_v4()),
            tests_to_run: PULL | PUSH | CONTENT_DISCOVERY | CONTENT_MANAGEMENT,
            delete_manifest_before_blobs: true,
            run_automatic_crossmount_test: false,
            automatic_crossmount_enabled: false,
            tag_name: String::new(),
            manifest_digest: String::new(),
            blob_digest: String::new(),
            tag_list: String::new(),
        }
    }

    pub fn run_pull_setup(&self) -> bool {
        !(!self.tag_name.is_empty()
            && !self.manifest_digest.is_empty()
            && !self.blob_digest.is_empty())
    }

    pub fn run_push_setup(&self) -> bool {
        true
    }

    pub fn run_content_discovery_setup(&self) -> bool {
        self.tag_list.is_empty()
    }

    pub fn run_content_management_setup(&self) -> bool {
        true
    }
}

/// A blob with its length and digest (`TestBlob`).
#[derive(Debug, Clone)]
pub struct TestBlob {
    pub content: Vec<u8>,
    pub content_length: String,
    pub digest: String,
}

impl TestBlob {
    fn new(content: Vec<u8>, digest_override: &str) -> TestBlob {
        let digest = if digest_override.is_empty() {
            sha256(&content)
        } else {
            digest_override.to_owned()
        };
        TestBlob {
            content_length: content.len().to_string(),
            content,
            digest,
        }
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    Digest::sha256_of(bytes).to_string()
}

/// Blob B and its two chunks (`setupChunkedBlob`).
#[derive(Debug, Clone)]
pub struct ChunkedBlob {
    pub digest: String,
    pub chunk1: Vec<u8>,
    pub chunk1_length: String,
    pub chunk1_range: String,
    pub chunk2: Vec<u8>,
    pub chunk2_length: String,
    pub chunk2_range: String,
}

impl ChunkedBlob {
    /// `setupChunkedBlob(size)`: `size` bytes from the seed+2 generator, split after
    /// `size/2 + 1` bytes; ranges without a `bytes=` prefix.
    pub fn new(size: usize, seed: u64) -> ChunkedBlob {
        let blob = random_blob(size, seed);
        let split = size / 2 + 1;
        let chunk1 = blob[..split].to_vec();
        let chunk2 = blob[split..].to_vec();
        ChunkedBlob {
            digest: sha256(&blob),
            chunk1_length: chunk1.len().to_string(),
            chunk1_range: format!("0-{}", chunk1.len() as i64 - 1),
            chunk2_length: chunk2.len().to_string(),
            chunk2_range: format!("{}-{}", chunk1.len(), blob.len() as i64 - 1),
            chunk1,
            chunk2,
        }
    }
}

/// Everything `init()` computes.
#[derive(Debug, Clone)]
pub struct TestData {
    pub seed: u64,
    pub configs: Vec<TestBlob>,
    pub manifests: Vec<TestBlob>,
    pub layer_blob_data: Vec<u8>,
    pub layer_blob_digest: String,
    pub layer_blob_content_length: String,
    pub empty_layer_manifest_content: Vec<u8>,
    pub empty_layer_manifest_digest: String,
    pub dummy_digest: String,
    pub test_blob_a: Vec<u8>,
    pub test_blob_a_length: String,
    pub test_blob_a_digest: String,
    /// Blob B; P-11 may regenerate it (`OCI-Chunk-Min-Length`).
    pub blob_b: ChunkedBlob,
    pub empty_json_blob: Vec<u8>,
    pub empty_json_digest: String,
    pub empty_json_size: usize,
    pub test_ref_blob_a: Vec<u8>,
    pub test_ref_blob_a_length: String,
    pub test_ref_blob_a_digest: String,
    pub test_ref_blob_b: Vec<u8>,
    pub test_ref_blob_b_length: String,
    pub test_ref_blob_b_digest: String,
    pub refs_manifest_a_config_artifact_content: Vec<u8>,
    pub refs_manifest_a_config_artifact_digest: String,
    pub refs_manifest_a_layer_artifact_content: Vec<u8>,
    pub refs_manifest_a_layer_artifact_digest: String,
    pub refs_manifest_b_config_artifact_content: Vec<u8>,
    pub refs_manifest_b_config_artifact_digest: String,
    pub refs_manifest_b_layer_artifact_content: Vec<u8>,
    pub refs_manifest_b_layer_artifact_digest: String,
    pub refs_manifest_c_layer_artifact_content: Vec<u8>,
    pub refs_manifest_c_layer_artifact_digest: String,
    pub refs_index_artifact_content: Vec<u8>,
    pub refs_index_artifact_digest: String,
    /// Artifact digest → the value of its `org.opencontainers.conformance.test` annotation.
    pub test_annotation_values: HashMap<String, String>,
}

/// A descriptor as the suite's `descriptor` struct marshals it: `newUnspecifiedField` is always
/// present (no `omitempty`), `null` unless given.
fn descriptor(
    media_type: &str,
    digest: &str,
    size: usize,
    data: Option<&[u8]>,
    unspecified: Option<&[u8]>,
) -> J {
    let mut fields = vec![
        ("mediaType", J::s(media_type)),
        ("digest", J::s(digest)),
        ("size", J::Int(size as i64)),
    ];
    if let Some(data) = data.filter(|d| !d.is_empty()) {
        fields.push(("data", J::bytes(data)));
    }
    fields.push(("newUnspecifiedField", unspecified.map_or(J::Null, J::bytes)));
    J::obj(fields)
}

/// `manifest` struct: schemaVersion, mediaType, artifactType, config, layers, subject, annotations.
fn manifest(
    media_type: Option<&str>,
    artifact_type: Option<&str>,
    config: J,
    layers: Vec<J>,
    subject: Option<J>,
    annotation: Option<&str>,
) -> Vec<u8> {
    let mut fields = vec![("schemaVersion", J::Int(2))];
    if let Some(media_type) = media_type {
        fields.push(("mediaType", J::s(media_type)));
    }
    if let Some(artifact_type) = artifact_type {
        fields.push(("artifactType", J::s(artifact_type)));
    }
    fields.push(("config", config));
    fields.push(("layers", J::Arr(layers)));
    if let Some(subject) = subject {
        fields.push(("subject", subject));
    }
    if let Some(value) = annotation {
        fields.push((
            "annotations",
            J::obj(vec![(TEST_ANNOTATION_KEY, J::s(value))]),
        ));
    }
    J::obj(fields).marshal_indent()
}

impl TestData {
    pub fn generate(config: &Config, rng: &mut Rng) -> TestData {
        let seed = rng.next_u64();

        // One config per workflow bit, each with a random author so the digests are new.
        let configs: Vec<TestBlob> = (0..NUM_WORKFLOWS)
            .map(|_| {
                let image = J::obj(vec![
                    ("author", J::s(&rng.random_string(16))),
                    ("architecture", J::s("amd64")),
                    ("os", J::s("linux")),
                    (
                        "rootfs",
                        J::obj(vec![("type", J::s("layers")), ("diff_ids", J::Arr(vec![]))]),
                    ),
                ]);
                TestBlob::new(image.marshal_indent(), &config.blob_digest)
            })
            .collect();

        let layer_blob_data = base64_decode(LAYER_BASE64).expect("layer base64");
        let layer_blob_digest = sha256(&layer_blob_data);
        let layer = || {
            descriptor(
                MEDIA_TYPE_LAYER,
                &layer_blob_digest,
                layer_blob_data.len(),
                None,
                None,
            )
        };

        let config_descriptor = |c: &TestBlob| {
            descriptor(
                MEDIA_TYPE_CONFIG,
                &c.digest,
                c.content.len(),
                Some(&c.content),
                Some(b"hello world"),
            )
        };
        let manifests: Vec<TestBlob> = configs
            .iter()
            .map(|c| {
                let content = manifest(
                    Some(MEDIA_TYPE_MANIFEST),
                    None,
                    config_descriptor(c),
                    vec![layer()],
                    None,
                    None,
                );
                TestBlob::new(content, &config.manifest_digest)
            })
            .collect();

        let empty_layer_manifest_content = manifest(
            None,
            None,
            config_descriptor(&configs[1]),
            vec![],
            None,
            None,
        );
        let empty_layer_manifest_digest = sha256(&empty_layer_manifest_content);

        let test_blob_a = random_blob(42, seed.wrapping_add(1));
        let blob_b = ChunkedBlob::new(42, seed.wrapping_add(2));

        let empty_json_blob = b"{}".to_vec();
        let empty_json_digest = sha256(&empty_json_blob);
        let empty_json = || {
            descriptor(
                MEDIA_TYPE_EMPTY,
                &empty_json_digest,
                empty_json_blob.len(),
                None,
                None,
            )
        };

        let test_ref_blob_a = b"NHL Peanut Butter on my NHL bagel".to_vec();
        let test_ref_blob_a_digest = sha256(&test_ref_blob_a);
        let test_ref_blob_b = b"NBA Strawberry Jam on my NBA croissant".to_vec();
        let test_ref_blob_b_digest = sha256(&test_ref_blob_b);

        // Subjects are computed from the manifest bytes, never from OCI_MANIFEST_DIGEST.
        let subject_of = |m: &TestBlob| {
            descriptor(
                MEDIA_TYPE_MANIFEST,
                &sha256(&m.content),
                m.content.len(),
                None,
                None,
            )
        };
        let subject4 = || subject_of(&manifests[4]);

        let mut annotations = HashMap::new();
        let mut artifact = |media_type: Option<&str>,
                            artifact_type: Option<&str>,
                            config: J,
                            layers: Vec<J>,
                            subject: J,
                            annotation: Option<&str>| {
            let content = manifest(
                media_type,
                artifact_type,
                config,
                layers,
                Some(subject),
                annotation,
            );
            let digest = sha256(&content);
            if let Some(value) = annotation {
                annotations.insert(digest.clone(), value.to_owned());
            }
            (content, digest)
        };

        let ref_a = || {
            descriptor(
                TEST_REF_ARTIFACT_TYPE_A,
                &test_ref_blob_a_digest,
                test_ref_blob_a.len(),
                None,
                None,
            )
        };
        let ref_b = || {
            descriptor(
                TEST_REF_ARTIFACT_TYPE_B,
                &test_ref_blob_b_digest,
                test_ref_blob_b.len(),
                None,
                None,
            )
        };

        let (a_config, a_config_digest) = artifact(
            Some(MEDIA_TYPE_MANIFEST),
            None,
            ref_a(),
            vec![empty_json()],
            subject4(),
            Some("test config a"),
        );
        let (b_config, b_config_digest) = artifact(
            Some(MEDIA_TYPE_MANIFEST),
            None,
            ref_b(),
            vec![empty_json()],
            subject4(),
            Some("test config b"),
        );
        let (a_layer, a_layer_digest) = artifact(
            Some(MEDIA_TYPE_MANIFEST),
            Some(TEST_REF_ARTIFACT_TYPE_A),
            empty_json(),
            vec![ref_a()],
            subject4(),
            Some("test layer a"),
        );
        let (b_layer, b_layer_digest) = artifact(
            Some(MEDIA_TYPE_MANIFEST),
            Some(TEST_REF_ARTIFACT_TYPE_B),
            empty_json(),
            vec![ref_b()],
            subject4(),
            Some("test layer b"),
        );
        // Like B-layer, but its subject (manifests[3]) is not pushed until Content Management.
        let (c_layer, c_layer_digest) = artifact(
            Some(MEDIA_TYPE_MANIFEST),
            Some(TEST_REF_ARTIFACT_TYPE_B),
            empty_json(),
            vec![ref_b()],
            subject_of(&manifests[3]),
            None,
        );

        // `index` struct: schemaVersion, mediaType, artifactType, manifests, subject, annotations.
        let index = J::obj(vec![
            ("schemaVersion", J::Int(2)),
            ("mediaType", J::s(MEDIA_TYPE_INDEX)),
            ("artifactType", J::s(TEST_REF_ARTIFACT_TYPE_INDEX)),
            (
                "manifests",
                J::Arr(vec![
                    descriptor(
                        MEDIA_TYPE_MANIFEST,
                        &a_config_digest,
                        a_config.len(),
                        None,
                        None,
                    ),
                    descriptor(
                        MEDIA_TYPE_MANIFEST,
                        &a_layer_digest,
                        a_layer.len(),
                        None,
                        None,
                    ),
                ]),
            ),
            ("subject", subject4()),
            (
                "annotations",
                J::obj(vec![(TEST_ANNOTATION_KEY, J::s("test index"))]),
            ),
        ]);
        let index_content = index.marshal_indent();
        let index_digest = sha256(&index_content);
        annotations.insert(index_digest.clone(), "test index".to_owned());

        TestData {
            seed,
            layer_blob_content_length: layer_blob_data.len().to_string(),
            layer_blob_data: layer_blob_data.clone(),
            layer_blob_digest: layer_blob_digest.clone(),
            empty_layer_manifest_content,
            empty_layer_manifest_digest,
            dummy_digest: sha256(b"hello world"),
            test_blob_a_length: test_blob_a.len().to_string(),
            test_blob_a_digest: sha256(&test_blob_a),
            test_blob_a,
            blob_b,
            empty_json_size: empty_json_blob.len(),
            empty_json_digest: empty_json_digest.clone(),
            empty_json_blob: empty_json_blob.clone(),
            test_ref_blob_a_length: test_ref_blob_a.len().to_string(),
            test_ref_blob_a_digest: test_ref_blob_a_digest.clone(),
            test_ref_blob_a: test_ref_blob_a.clone(),
            test_ref_blob_b_length: test_ref_blob_b.len().to_string(),
            test_ref_blob_b_digest: test_ref_blob_b_digest.clone(),
            test_ref_blob_b: test_ref_blob_b.clone(),
            refs_manifest_a_config_artifact_content: a_config,
            refs_manifest_a_config_artifact_digest: a_config_digest,
            refs_manifest_a_layer_artifact_content: a_layer,
            refs_manifest_a_layer_artifact_digest: a_layer_digest,
            refs_manifest_b_config_artifact_content: b_config,
            refs_manifest_b_config_artifact_digest: b_config_digest,
            refs_manifest_b_layer_artifact_content: b_layer,
            refs_manifest_b_layer_artifact_digest: b_layer_digest,
            refs_manifest_c_layer_artifact_content: c_layer,
            refs_manifest_c_layer_artifact_digest: c_layer_digest,
            refs_index_artifact_content: index_content,
            refs_index_artifact_digest: index_digest,
            test_annotation_values: annotations,
            configs,
            manifests,
        }
    }

    /// The expected annotation value for a referrer digest (Go map lookup: "" when unknown).
    pub fn annotation_for(&self, digest: &str) -> String {
        self.test_annotation_values
            .get(digest)
            .cloned()
            .unwrap_or_default()
    }
}

/// `randomBlob(size, seed)`: reproducible pseudo-random bytes for a seed.
pub fn random_blob(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..size).map(|_| rng.next_u64() as u8).collect()
}

/// A small xorshift64* generator (no dependency); seeded from the clock for each run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so nearby seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn from_time() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng::new(nanos ^ u64::from(std::process::id()).rotate_left(32))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `randomString(n)` over `[0-9A-Za-z-]`.
    pub fn random_string(&mut self, n: usize) -> String {
        const LETTERS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-";
        (0..n)
            .map(|_| LETTERS[(self.next_u64() % LETTERS.len() as u64) as usize] as char)
            .collect()
    }

    /// A random (version 4) UUID in its canonical text form, as `uuid.New()` prints it.
    pub fn uuid_v4(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gojson::{INDEX, unmarshal};

    #[test]
    fn fixed_test_data_matches_the_suite() {
        let mut rng = Rng::new(7);
        let config = Config::defaults(&mut rng);
        let d = TestData::generate(&config, &mut rng);
        assert_eq!(d.layer_blob_data.len(), 168);
        assert_eq!(
            d.layer_blob_digest,
            "sha256:48acff1d91752e957527c1b5416e7376d910bcacf01b9441175f8c270e35c183"
        );
        assert_eq!(d.empty_json_digest, EMPTY_JSON_DIGEST);
        assert_eq!(
            d.dummy_digest,
            "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            d.test_ref_blob_a_digest,
            "sha256:ee29d2e91da0e5dbf6536f5b369148a83ef59b0ce96e49da65dd6c25eb1fa44f"
        );
        assert_eq!(
            d.test_ref_blob_b_digest,
            "sha256:de8dd16ee87b367b932e1f47c92c332966c0d09942d5f2f80063ecf630c48ae9"
        );
        assert_eq!(d.configs.len(), 16);
        assert_eq!(d.manifests.len(), 16);
        assert_eq!(
            (
                d.blob_b.chunk1_range.as_str(),
                d.blob_b.chunk2_range.as_str()
            ),
            ("0-21", "22-41")
        );
        assert_eq!((d.blob_b.chunk1.len(), d.blob_b.chunk2.len()), (22, 20));
        assert_eq!(d.test_blob_a.len(), 42);
        assert_eq!(d.test_annotation_values.len(), 5);
        assert!(config.crossmount_namespace.starts_with("conformance-"));
        assert_eq!(config.crossmount_namespace.len(), "conformance-".len() + 36);

        // Go's MarshalIndent shape: tabs, ": ", no trailing newline.
        let c0 = String::from_utf8(d.configs[0].content.clone()).unwrap();
        assert!(c0.starts_with("{\n\t\"author\": \""), "{c0}");
        assert!(
            c0.ends_with(
                "\",\n\t\"architecture\": \"amd64\",\n\t\"os\": \"linux\",\n\t\"rootfs\": {\n\t\t\"type\": \"layers\",\n\t\t\"diff_ids\": []\n\t}\n}"
            ),
            "{c0}"
        );
        assert_eq!(c0.len(), 129);
        let m0 = String::from_utf8(d.manifests[0].content.clone()).unwrap();
        let expected = format!(
            "{{\n\t\"schemaVersion\": 2,\n\t\"mediaType\": \"{MEDIA_TYPE_MANIFEST}\",\n\t\"config\": {{\n\t\t\"mediaType\": \"application/vnd.oci.image.config.v1+json\",\n\t\t\"digest\": \"{}\",\n\t\t\"size\": 129,\n\t\t\"data\": \"{}\",\n\t\t\"newUnspecifiedField\": \"aGVsbG8gd29ybGQ=\"\n\t}},\n\t\"layers\": [\n\t\t{{\n\t\t\t\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\",\n\t\t\t\"digest\": \"{}\",\n\t\t\t\"size\": 168,\n\t\t\t\"newUnspecifiedField\": null\n\t\t}}\n\t]\n}}",
            d.configs[0].digest,
            crate::gojson::base64_encode(&d.configs[0].content),
            d.layer_blob_digest
        );
        assert_eq!(m0, expected);
        let empty = String::from_utf8(d.empty_layer_manifest_content.clone()).unwrap();
        assert!(
            empty.starts_with("{\n\t\"schemaVersion\": 2,\n\t\"config\": {"),
            "{empty}"
        );
        assert!(empty.ends_with("\n\t},\n\t\"layers\": []\n}"), "{empty}");

        let a_layer = String::from_utf8(d.refs_manifest_a_layer_artifact_content.clone()).unwrap();
        assert!(
            a_layer.starts_with(&format!(
                "{{\n\t\"schemaVersion\": 2,\n\t\"mediaType\": \"{MEDIA_TYPE_MANIFEST}\",\n\t\"artifactType\": \"{TEST_REF_ARTIFACT_TYPE_A}\",\n\t\"config\": {{\n\t\t\"mediaType\": \"application/vnd.oci.empty.v1+json\""
            )),
            "{a_layer}"
        );
        assert!(
            a_layer.ends_with(&format!(
                "\t\"subject\": {{\n\t\t\"mediaType\": \"{MEDIA_TYPE_MANIFEST}\",\n\t\t\"digest\": \"{}\",\n\t\t\"size\": {},\n\t\t\"newUnspecifiedField\": null\n\t}},\n\t\"annotations\": {{\n\t\t\"{TEST_ANNOTATION_KEY}\": \"test layer a\"\n\t}}\n}}",
                sha256(&d.manifests[4].content),
                d.manifests[4].content.len()
            )),
            "{a_layer}"
        );
        let c_layer = String::from_utf8(d.refs_manifest_c_layer_artifact_content.clone()).unwrap();
        assert!(!c_layer.contains("annotations"), "{c_layer}");
        assert!(
            c_layer.contains(&sha256(&d.manifests[3].content)),
            "{c_layer}"
        );
        let index = String::from_utf8(d.refs_index_artifact_content.clone()).unwrap();
        assert!(
            index.starts_with(&format!(
                "{{\n\t\"schemaVersion\": 2,\n\t\"mediaType\": \"{MEDIA_TYPE_INDEX}\",\n\t\"artifactType\": \"{TEST_REF_ARTIFACT_TYPE_INDEX}\",\n\t\"manifests\": [\n\t\t{{\n\t\t\t\"mediaType\": \"{MEDIA_TYPE_MANIFEST}\",\n\t\t\t\"digest\": \"{}\"",
                d.refs_manifest_a_config_artifact_digest
            )),
            "{index}"
        );
        assert!(unmarshal(&d.refs_index_artifact_content, INDEX).is_ok());
    }

    #[test]
    fn go_unmarshal_type_errors() {
        assert!(unmarshal(br#"{"manifests":[{"size":1.5}]}"#, INDEX).is_err());
        assert!(unmarshal(br#"{"manifests":{}}"#, INDEX).is_err());
        assert!(unmarshal(br#"{"Manifests":[{"annotations":{"a":1}}]}"#, INDEX).is_err());
        assert!(unmarshal(br#"{"manifests":[{"newUnspecifiedField":"!"}]}"#, INDEX).is_err());
        assert!(unmarshal(br#"{"manifests":null,"extra":[1,2]}"#, INDEX).is_ok());
        assert!(unmarshal(b"null", INDEX).is_ok());
        assert!(unmarshal(b"[]", INDEX).is_err());
    }
}
