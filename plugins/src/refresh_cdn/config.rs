//! `<plugin name="refreshCDN">` options: one set per `<localpath watch>`.

use sersync_plugin_sdk::{ConfigError, ConfigNode};

use super::chinacache::ChinaCache;
use super::purge::Purge;
use super::url::UrlRule;
use crate::common::options::PerWatch;

/// Where purges go.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// `<cdninfo>` alone: ChinaCache's API as 2.5.4 spoke it.
    ChinaCache(ChinaCache),
    /// `<purge>`: a generic HTTP purge API (takes precedence over `<cdninfo>`).
    Purge(Purge),
}

/// Options for one watch.
#[derive(Clone, Debug)]
pub(crate) struct CdnOptions {
    /// How a path becomes a URL.
    pub urls: UrlRule,
    /// Where the URLs are sent.
    pub backend: Backend,
}

/// Reads every `<localpath>` of the plugin.
pub(crate) fn parse(plugin: &ConfigNode) -> Result<PerWatch<CdnOptions>, ConfigError> {
    PerWatch::parse(plugin, |lp| {
        let backend = match (lp.child("purge"), lp.child("cdninfo")) {
            (Some(purge), _) => Backend::Purge(Purge::parse(purge)?),
            (None, Some(cdninfo)) => Backend::ChinaCache(ChinaCache::parse(cdninfo)?),
            (None, None) => {
                return Err(lp
                    .error("refreshCDN: <localpath> has neither <cdninfo> nor <purge>")
                    .with_hint("add <cdninfo domainname port username passwd/> (ChinaCache) or <purge method url …/> (any HTTP purge API)"))
            }
        };
        Ok(CdnOptions {
            urls: UrlRule::parse(lp)?,
            backend,
        })
    })
}
