//! Reference releases: each import of an official reference file, recorded append-only with
//! its entries, and the catalogue in force built from them (see
//! [`observatory_domain::catalogue`]).

use std::collections::BTreeMap;

use observatory_domain::catalogue::{self, Catalogue, Release, ReleaseContent};
use tracing::Instrument;

use crate::{Result, Store};

impl Store {
    /// Records a release (its entries and an audit event as `actor`, in one transaction), or
    /// finds the release of the same source and checksum already recorded: `(release, false)`.
    pub async fn record_release(
        &self,
        content: &ReleaseContent,
        actor: &str,
        request_id: &str,
    ) -> Result<(Release, bool)> {
        async {
            dispatch!(
                self,
                reference_sql::record(content, actor, request_id, self.audit_key.as_ref())
            )
        }
        .instrument(tracing::info_span!(
            "store.record_release",
            source = content.source.code(),
            entries = content.entries.len()
        ))
        .await
    }

    /// Every release, oldest first.
    pub async fn reference_releases(&self) -> Result<Vec<Release>> {
        read!(self, reference_sql::list())
    }

    /// The newest release's number, 0 before the first: cheap, to see whether the catalogue
    /// changed since it was built.
    pub async fn last_release_seq(&self) -> Result<i64> {
        read!(self, reference_sql::last_seq())
    }

    /// The catalogue in force: for each kind, the entries of the release in force.
    pub async fn catalogue(&self) -> Result<Catalogue> {
        async {
            let releases = self.reference_releases().await?;
            let in_force = catalogue::in_force(&releases);
            let mut entries = BTreeMap::new();
            let mut chosen = BTreeMap::new();
            for (kind, release) in in_force {
                for (code, entry) in read!(self, reference_sql::entries(release.seq, kind))? {
                    entries.insert((kind, code), entry);
                }
                chosen.insert(kind, release.clone());
            }
            Ok(Catalogue::new(chosen, entries))
        }
        .instrument(tracing::info_span!("store.catalogue"))
        .await
    }
}
