//! Listings: a repository's tags, the catalog of repositories, and the referrers of a manifest.

use super::{Registry, RegistryError};
use wharf_core::digest::Digest;
use wharf_core::reference::RepositoryName;
use wharf_metadata::{Names, Page, Referrer};

/// The most entries one page of a listing returns, whatever the client asks for; the rest is
/// reached through the `Link` to the next page.
pub const MAX_PAGE: u32 = 10_000;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// The entries, in lexical order.
    pub items: Names,
    /// Whether entries follow this page (then the last item is where the next page starts).
    pub has_more: bool,
}

impl Registry {
    /// A page of `repository`'s tags: at most `n` (or every tag, up to [`MAX_PAGE`]) after `last`.
    pub async fn tags(
        &self,
        repository: &RepositoryName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<ListPage, RegistryError> {
        let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let mut items = self
            .metadata
            .tags(
                repository,
                Page {
                    last,
                    limit: limit + 1,
                },
            )
            .await?
            .ok_or(RegistryError::NameUnknown)?;
        Ok(page(&mut items, limit))
    }

    /// A page of the repository names `visible` accepts: at most `n` (or up to [`MAX_PAGE`])
    /// after `last`.
    pub async fn repositories(
        &self,
        n: Option<u32>,
        last: Option<&str>,
        visible: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<ListPage, RegistryError> {
        let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let mut items = Names::default();
        let mut after = last.map(str::to_owned);
        // Pages of the store are read until enough visible names are found (one more than the
        // limit tells whether there is a next page) or the names run out.
        loop {
            let batch = self
                .metadata
                .repositories(Page {
                    last: after.as_deref(),
                    limit: limit + 1,
                })
                .await?;
            let exhausted = batch.len() <= limit as usize;
            after = batch.last().map(str::to_owned);
            for name in batch.iter().filter(|name| visible(name)) {
                items.push(name);
            }
            if exhausted || items.len() > limit as usize {
                break;
            }
        }
        items.truncate(limit as usize + 1);
        Ok(page(&mut items, limit))
    }

    /// The manifests of `repository` whose subject is `subject`, optionally of one artifact type.
    /// An unknown repository or subject simply has none.
    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, RegistryError> {
        Ok(self
            .metadata
            .referrers(repository, subject, artifact_type)
            .await?)
    }
}

fn page(items: &mut Names, limit: u32) -> ListPage {
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    ListPage {
        items: std::mem::take(items),
        has_more,
    }
}
