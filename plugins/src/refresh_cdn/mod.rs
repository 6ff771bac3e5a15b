//! The `refreshCDN` sink: purges the public URLs of changed paths from a CDN.
//!
//! Two backends: ChinaCache's API exactly as sersync 2.5.4 called it (one `HEAD` per URL on
//! its own connection), or any HTTP purge API described by a `<purge>` element (method, URL
//! template, optional JSON body carrying many URLs, headers, rate limit). See
//! `docs/sinks/refresh-cdn.md`.

mod chinacache;
mod config;
mod purge;
mod url;

use std::path::PathBuf;
use std::time::Instant;

use sersync_plugin_sdk::{Batch, ConfigError, ConfigNode, Sink, SinkContext, SinkError};

use crate::common::changes::changed_paths;
use crate::common::options::PerWatch;
use crate::SinkSpec;
use config::{Backend, CdnOptions};

/// Reads `<plugin name="refreshCDN">` into a [`SinkSpec`].
pub fn configure(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    Ok(Box::new(RefreshCdnSpec {
        lanes: config::parse(node)?,
    }))
}

/// The validated refreshCDN configuration, per watch.
#[derive(Debug)]
struct RefreshCdnSpec {
    lanes: PerWatch<CdnOptions>,
}

impl SinkSpec for RefreshCdnSpec {
    fn name(&self) -> String {
        "refreshCDN".into()
    }

    fn own_watches(&self) -> Vec<PathBuf> {
        self.lanes.watches()
    }

    fn summary(&self) -> String {
        self.lanes.summary("refreshCDN", |o| match &o.backend {
            Backend::ChinaCache(cc) => format!("ChinaCache HEAD to {}", cc.peer()),
            Backend::Purge(p) => p.summary(),
        })
    }

    fn start(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(RefreshCdnSink {
            options: self.lanes.for_root(&ctx.root, "refreshCDN")?.clone(),
            next_request: Instant::now(),
        }))
    }
}

/// One lane of the refreshCDN sink.
struct RefreshCdnSink {
    options: CdnOptions,
    /// Earliest start of the next purge request (`<purge rps>`).
    next_request: Instant,
}

impl RefreshCdnSink {
    /// The URLs to purge, in batch order, each once, with whether it names a directory. Both
    /// names of a move are purged; a rescan purges its path (a directory URL for a directory).
    fn urls(&self, batch: &Batch) -> Vec<(String, bool)> {
        let mut seen = std::collections::HashSet::new();
        changed_paths(batch)
            .filter_map(|c| {
                let url = self.options.urls.url(&batch.root, c.path, c.event.is_dir)?;
                seen.insert(url.clone()).then_some((url, c.event.is_dir))
            })
            .collect()
    }
}

impl Sink for RefreshCdnSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let urls = self.urls(batch);
        match &self.options.backend {
            Backend::ChinaCache(cc) => urls
                .iter()
                .try_for_each(|(url, is_dir)| cc.purge(url, *is_dir)),
            Backend::Purge(p) => {
                let urls: Vec<String> = urls.into_iter().map(|(url, _)| url).collect();
                p.purge(&urls, &mut self.next_request)
            }
        }
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        let urls = self.urls(batch);
        match &self.options.backend {
            Backend::ChinaCache(cc) => urls
                .iter()
                .map(|(url, is_dir)| {
                    let key = if *is_dir { "dirs" } else { "urls" };
                    format!("would HEAD /index.jsp?…&{key}={url} on {}", cc.peer())
                })
                .collect(),
            Backend::Purge(p) => {
                let urls: Vec<String> = urls.into_iter().map(|(url, _)| url).collect();
                p.requests(&urls)
                    .into_iter()
                    .map(|(url, body)| match body {
                        Some(body) => format!("would {} {url} with {body}", p.method()),
                        None => format!("would {} {url}", p.method()),
                    })
                    .collect()
            }
        }
    }
}
