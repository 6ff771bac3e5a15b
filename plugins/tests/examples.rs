//! The example configurations configure: every built-in `<plugin>` section in them loads.

mod support;

use sersync_plugins::configure_plugin;

#[test]
fn example_configs_load() {
    // The only test in this binary, so setting variables races no other thread.
    std::env::set_var("SERSYNC_CDN_TOKEN", "example-token");
    std::env::set_var("SERSYNC_WEBHOOK_TOKEN", "example-token");
    let examples = [
        (
            "rsync-and-cdn.xml",
            include_str!("../../examples/configs/rsync-and-cdn.xml"),
            "refreshCDN",
        ),
        (
            "socket-json.xml",
            include_str!("../../examples/configs/socket-json.xml"),
            "socket",
        ),
        (
            "http-webhook.xml",
            include_str!("../../examples/configs/http-webhook.xml"),
            "http",
        ),
        (
            "command.xml",
            include_str!("../../examples/configs/command.xml"),
            "command",
        ),
        (
            "2.5.4 default",
            include_str!("data/confxml-2.5.4.xml"),
            "command",
        ),
    ];
    for (file, xml, expected) in examples {
        let head = support::xml::parse(xml);
        let mut names = Vec::new();
        for node in head.children.iter().filter(|c| c.name == "plugin") {
            let spec = configure_plugin(node).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(
                !spec.summary().contains("example-token"),
                "{file}: {}",
                spec.summary()
            );
            names.push(spec.name());
        }
        assert!(names.iter().any(|n| n == expected), "{file}: {names:?}");
    }
}
