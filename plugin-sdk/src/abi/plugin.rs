//! The trait a third-party plugin implements, whatever it is compiled to.

use crate::Sink;

/// A [`Sink`] that a third-party plugin exports: a sink plus a constructor from the plugin's
/// `<param name="…" value="…"/>` pairs.
///
/// sersync builds one instance per lane (one watch), and one more at startup to check the
/// configuration, which it drops at once. The same implementation compiles to a native
/// library with [`export_sink!`](crate::export_sink) or to a WASM component with
/// `export_wasm_sink!` (feature `guest`).
pub trait Plugin: Sink + Sized + 'static {
    /// Builds an instance from the `<param>` pairs, in document order. An error rejects the
    /// configuration: sersync does not start and shows the message, so name the parameter.
    fn from_params(params: &[(String, String)]) -> Result<Self, String>;
}
