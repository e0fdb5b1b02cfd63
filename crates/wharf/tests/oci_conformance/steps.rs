//! Request sequences and response parsing that several workflows share.

use crate::client::{Client, Opts, Response};
use crate::gojson::{
    ERROR_RESPONSE, INDEX, TAG_LIST, slice_field, str_field, string_map_field, strings_field,
    unmarshal,
};
use crate::harness::{SpecResult, Stop, expect_2xx, fail};

/// "Upload blob X" (§4.5): `POST /v2/<name>/blobs/uploads/` (only the transport error is
/// checked), then `PUT <relative Location>?digest=…` with the blob, which must be 2xx. `name` is
/// the repository ("" for the default one).
pub async fn upload_blob(
    client: &mut Client,
    blob: &[u8],
    length: &str,
    digest: &str,
    name: &str,
) -> SpecResult {
    let opts = Opts {
        name: name.to_owned(),
        ..Opts::default()
    };
    let req = client.request("POST", "/v2/<name>/blobs/uploads/", opts);
    let resp = client.send(req).await?;
    let req = client
        .request("PUT", &resp.relative_location(), Opts::default())
        .query("digest", digest)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", length)
        .body(blob);
    let resp = client.send(req).await?;
    expect_2xx(&resp)
}

/// reggie's `resp.Errors()`: the body (trimmed) parsed as `{"errors": [...]}`; an error if it is
/// not JSON of that shape or if the list is empty. Returns each error's `code`.
pub fn error_codes(resp: &Response) -> Result<Vec<String>, Stop> {
    let value = match unmarshal(resp.string().as_bytes(), ERROR_RESPONSE) {
        Ok(value) => value,
        Err(e) => {
            return fail(format!(
                "Expected err to be nil (parsing the error body), got: {e}"
            ));
        }
    };
    let errors = slice_field(&value, "errors");
    if errors.is_empty() {
        return fail("Expected err to be nil, got: body was valid json but could not be parsed");
    }
    Ok(errors.iter().map(|e| str_field(e, "code")).collect())
}

/// `getTagList(resp)`: the `tags` of a tag list, or an empty list when the body does not parse.
pub fn get_tag_list(resp: &Response) -> Vec<String> {
    match unmarshal(&resp.body, TAG_LIST) {
        Ok(value) => strings_field(&value, "tags"),
        Err(_) => Vec::new(),
    }
}

/// `json.Unmarshal([]byte(resp.String()), &TagList{})` where an error fails the spec.
pub fn parse_tag_list(resp: &Response) -> Result<Vec<String>, Stop> {
    match unmarshal(resp.string().as_bytes(), TAG_LIST) {
        Ok(value) => Ok(strings_field(&value, "tags")),
        Err(e) => fail(format!(
            "Expected err to be nil (parsing the tag list), got: {e}"
        )),
    }
}

/// A referrers response parsed into the suite's `index` struct: `(digest, annotations)` of each
/// descriptor in `manifests`.
pub type Referrer = (String, Vec<(String, String)>);

pub fn parse_index(resp: &Response) -> Result<Vec<Referrer>, Stop> {
    let value = match unmarshal(&resp.body, INDEX) {
        Ok(value) => value,
        Err(e) => {
            return fail(format!(
                "Expected err to be nil (parsing the image index), got: {e}"
            ));
        }
    };
    Ok(slice_field(&value, "manifests")
        .into_iter()
        .map(|d| (str_field(d, "digest"), string_map_field(d, "annotations")))
        .collect())
}
