//! Native plugins: a shared library exporting the C ABI of [`sersync_plugin_sdk::abi`].
//!
//! The library is loaded once at configuration time and never unloaded; its ABI version is
//! checked before any other of its functions is called, and one instance is created (and
//! dropped) to let the plugin reject its parameters before sersync starts. Each lane then gets
//! an instance of its own.

mod load;
mod sink;

use std::path::PathBuf;

use sersync_plugin_sdk::abi::SinkVTable;
use sersync_plugin_sdk::{ConfigError, ConfigNode, Sink, SinkContext, SinkError};

use crate::registry::SinkSpec;
use crate::third_party::PluginFile;
use sink::DylibSink;

/// A loaded native plugin, ready to start lanes.
#[derive(Debug)]
struct DylibSpec {
    file: PluginFile,
    vtable: &'static SinkVTable,
}

/// Loads the library a `<plugin type="dylib" path="FILE">` element names.
pub fn configure(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    let file = PluginFile::from_node(node)?;
    let vtable = load::load(&file.path, &file.name).map_err(|m| file.error(node, m))?;
    DylibSink::new(&file.name, vtable, &file.params)
        .map_err(|e| file.error(node, format!("rejected its configuration: {}", e.message)))?;
    Ok(Box::new(DylibSpec { file, vtable }))
}

impl SinkSpec for DylibSpec {
    fn name(&self) -> String {
        self.file.name.clone()
    }

    fn own_watches(&self) -> Vec<PathBuf> {
        self.file.watches.clone()
    }

    fn summary(&self) -> String {
        format!(
            "native plugin {} ({} parameters)",
            self.file.path.display(),
            self.file.params.len()
        )
    }

    fn start(&self, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        match DylibSink::new(&self.file.name, self.vtable, &self.file.params) {
            Ok(sink) => Ok(Box::new(sink)),
            Err(e) => Err(SinkError {
                message: format!("plugin {}: {}", self.file.name, e.message),
                ..e
            }),
        }
    }
}
