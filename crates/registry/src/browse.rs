//! What the web UI reads: repositories with their last push and size, a repository's tags with
//! their manifests (see `wharf_metadata::browse`).

use super::{Registry, RegistryError};
use wharf_core::reference::RepositoryName;
use wharf_metadata::Page;
use wharf_metadata::browse::{RepositoryCursor, RepositoryQuery, RepositorySummary, TagSummary};

/// The most batches of the store one page reads looking for repositories the caller may see,
/// so that a caller who may see few of many repositories gets a short page, not a long wait.
const MAX_BATCHES: usize = 20;

impl Registry {
    /// A page of at most `query.limit` repositories `visible` accepts, and where the next page
    /// starts if more may follow.
    pub async fn browse_repositories(
        &self,
        query: &RepositoryQuery<'_>,
        visible: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(Vec<RepositorySummary>, Option<RepositoryCursor>), RegistryError> {
        let limit = query.limit.clamp(1, 1000) as usize;
        let mut found = Vec::new();
        let mut after = query.after.cloned();
        for _ in 0..MAX_BATCHES {
            let batch = self
                .metadata
                .browse_repositories(&RepositoryQuery {
                    after: after.as_ref(),
                    limit: limit as u32 + 1,
                    ..query.clone()
                })
                .await?;
            let exhausted = batch.len() <= limit;
            after = batch.last().map(|last| last.cursor(query.sort));
            found.extend(batch.into_iter().filter(|r| visible(&r.name)));
            if found.len() > limit {
                found.truncate(limit);
                let next = found.last().map(|last| last.cursor(query.sort));
                return Ok((found, next));
            }
            if exhausted {
                return Ok((found, None));
            }
        }
        // Out of batches with room left: the next page goes on from the last one read.
        Ok((found, after))
    }

    /// A page of `repository`'s tags after `last`, with their manifests.
    pub async fn browse_tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TagSummary>, RegistryError> {
        self.metadata
            .browse_tags(repository, Page { last, limit })
            .await?
            .ok_or(RegistryError::NameUnknown)
    }
}
