//! sersync's `confxml.xml`: parsed once at start into the typed [`Config`] the rest of the
//! engine uses. The XML shape stays inside this module.

mod model;

pub use model::*;
