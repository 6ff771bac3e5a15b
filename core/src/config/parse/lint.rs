//! Warnings: what is valid but most likely not what the author meant. 2.5.4 silently ignored
//! unknown elements and treated any switch value but `true` as off; a typo there (`<exlude>`,
//! `start="True"`) silently changes behaviour, so each one is reported, located.

use sersync_plugin_sdk::config::Attribute;
use sersync_plugin_sdk::{ConfigError, ConfigNode};

use crate::config::Config;
use sersync_plugin_sdk::config::attrs::{quoted, spelled};

/// The elements and attributes this version reads, by position in the tree.
struct Shape {
    name: &'static str,
    attributes: &'static [&'static str],
    children: &'static [Shape],
    /// Contents belong to someone else (a plugin's sink): not checked here.
    foreign: bool,
}

const fn shape(
    name: &'static str,
    attributes: &'static [&'static str],
    children: &'static [Shape],
) -> Shape {
    Shape {
        name,
        attributes,
        children,
        foreign: false,
    }
}

const fn switch(name: &'static str) -> Shape {
    shape(name, &["start"], &[])
}

const EXCLUDE: Shape = shape("exclude", &["expression"], &[]);

const HEAD: Shape = shape(
    "head",
    &["version"],
    &[
        shape(
            "host",
            &["hostip", "port", "tokenfile", "readsneedtoken"],
            &[],
        ),
        switch("debug"),
        shape("filesystem", &["xfs"], &[]),
        shape(
            "filter",
            &["start"],
            &[
                EXCLUDE,
                shape(
                    "tempfiles",
                    &["start"],
                    &[shape("pattern", &["expression"], &[])],
                ),
            ],
        ),
        shape(
            "inotify",
            &[],
            &[
                switch("delete"),
                switch("createfolder"),
                switch("createfile"),
                switch("closewrite"),
                switch("movefrom"),
                switch("moveto"),
                switch("attrib"),
                switch("modify"),
            ],
        ),
        shape(
            "sersync",
            &[],
            &[
                shape(
                    "localpath",
                    &["watch"],
                    &[shape("remote", &["ip", "name"], &[])],
                ),
                shape(
                    "rsync",
                    &[],
                    &[
                        shape("commonparams", &["params"], &[]),
                        shape("auth", &["start", "users", "passwordfile"], &[]),
                        shape("userdefinedport", &["start", "port"], &[]),
                        shape("timeout", &["start", "time"], &[]),
                        switch("ssh"),
                        shape("program", &["path"], &[]),
                        shape(
                            "deletesafety",
                            &["maxdeletes", "maxdeletepercent", "allowemptyroot"],
                            &[],
                        ),
                    ],
                ),
                shape("faillog", &["path", "timetoexecute"], &[]),
                shape(
                    "crontab",
                    &["start", "schedule"],
                    &[shape("crontabfilter", &["start"], &[EXCLUDE])],
                ),
                shape(
                    "plugin",
                    &["start", "name", "after", "quorum", "maxwait", "ontimeout"],
                    &[],
                ),
            ],
        ),
        Shape {
            foreign: true,
            ..shape("plugin", &[], &[])
        },
        shape(
            "engine",
            &[
                "settlems",
                "idlesettlems",
                "maxdelayms",
                "busymaxdelayms",
                "maxpending",
                "retryinitialms",
                "retrymaxms",
                "transfersperremote",
                "warmtransfers",
                "auditseconds",
                "statedir",
            ],
            &[],
        ),
    ],
);

/// Elements that may appear more than once; of any other, only the first is read.
const REPEATABLE: &[&str] = &["localpath", "remote", "exclude", "pattern", "plugin"];

/// Attributes read as switches: only `true` turns them on.
const SWITCHES: &[&str] = &["start", "xfs"];

/// Every warning for the tree under `head`, in document order, then for the whole `config`.
pub fn warnings(head: &ConfigNode, config: &Config) -> Vec<ConfigError> {
    let mut found = Vec::new();
    check(head, &HEAD, &mut found);
    found.extend(ignored_xfs(head));
    found.extend(silent_watches(config));
    found
}

/// Unknown attributes and children of `node`, and switch values that are neither `true`
/// nor `false`, recursively.
fn check(node: &ConfigNode, shape: &Shape, found: &mut Vec<ConfigError>) {
    if shape.foreign {
        return;
    }
    for attr in &node.attributes {
        if !shape.attributes.contains(&attr.name.as_str()) {
            found.push(unknown_attribute(node, attr, shape));
        } else if SWITCHES.contains(&attr.name.as_str())
            && !matches!(attr.value.as_str(), "true" | "false")
        {
            found.push(
                ConfigError::at(
                    attr.position,
                    format!("{} is read as off", quoted(node, attr)),
                )
                .with_hint(format!(
                    "a switch is on only when written {}=\"true\"",
                    spelled(&attr.name)
                )),
            );
        }
    }
    for (i, child) in node.children.iter().enumerate() {
        let earlier = node.children[..i].iter().find(|c| c.name == child.name);
        match shape.children.iter().find(|s| s.name == child.name) {
            None => found.push(unknown_element(node, child, shape)),
            Some(_) if earlier.is_some() && !REPEATABLE.contains(&child.name.as_str()) => {
                let first = earlier.map_or(child.position, |e| e.position);
                found.push(
                    child
                        .error(format!(
                            "a second <{}> in <{}> is ignored",
                            spelled(&child.name),
                            spelled(&node.name)
                        ))
                        .with_hint(format!(
                            "only the first, at {first}, is read; merge the two"
                        )),
                );
            }
            Some(child_shape) => check(child, child_shape, found),
        }
    }
}

fn unknown_attribute(node: &ConfigNode, attr: &Attribute, shape: &Shape) -> ConfigError {
    let known = shape.attributes.iter().copied();
    ConfigError::at(
        attr.position,
        format!(
            "<{}> has no attribute {}; it is ignored",
            spelled(&node.name),
            attr.name
        ),
    )
    .with_hint(suggestion(&attr.name, known, "attributes"))
}

fn unknown_element(parent: &ConfigNode, child: &ConfigNode, shape: &Shape) -> ConfigError {
    let known = shape.children.iter().map(|s| s.name);
    child
        .error(format!(
            "<{}> is not read inside <{}>; it is ignored",
            child.name,
            spelled(&parent.name)
        ))
        .with_hint(suggestion(&child.name, known, "elements"))
}

/// "did you mean X?" for a near miss, else the list of what is known there.
fn suggestion<'k>(name: &str, known: impl Iterator<Item = &'k str> + Clone, what: &str) -> String {
    let closest = known
        .clone()
        .map(|k| (distance(name, k), k))
        .filter(|&(d, _)| d <= 2)
        .min();
    match closest {
        Some((_, k)) => format!("did you mean {}?", spelled(k)),
        None => {
            let all: Vec<&str> = known.map(spelled).collect();
            match all.as_slice() {
                [] => format!("no {what} are read here"),
                all => format!("the {what} read here: {}", all.join(", ")),
            }
        }
    }
}

/// Levenshtein distance, in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// `<fileSystem xfs="true">`: accepted, as 2.5.4's files have it, but it changes nothing. 2.5.4
/// needed it where XFS reported no entry type (`DT_UNKNOWN`); the walk `lstat()`s exactly those
/// entries whatever the switch says, and a type the file system does report is right, so
/// `stat()`ing every entry would only make walks slower.
fn ignored_xfs(head: &ConfigNode) -> Option<ConfigError> {
    let node = head.child("filesystem")?;
    let attr = node.attribute("xfs").filter(|a| a.value == "true")?;
    Some(
        ConfigError::at(
            attr.position,
            format!("{} is accepted and ignored", quoted(node, attr)),
        )
        .with_hint(
            "the walk stat()s every entry whose type readdir does not report (XFS without \
             ftype) whatever the switch says; remove the attribute",
        ),
    )
}

/// Watches whose changes go nowhere: no destination of `<sersync>`'s own sinks (a `<remote>`)
/// and no plugin enabled.
fn silent_watches(config: &Config) -> Vec<ConfigError> {
    if !config.enabled_plugins.is_empty() {
        return Vec::new();
    }
    config
        .watches
        .iter()
        .enumerate()
        .filter(|(i, _)| !config.sersync_sinks.serves(*i))
        .map(|(_, w)| {
            ConfigError::at(
                w.position,
                format!(
                    "changes under {} go nowhere: it has no <remote> and no plugin is enabled",
                    w.root.display()
                ),
            )
            .with_hint("add <remote ip=\"HOST\" name=\"MODULE\"/> inside the <localpath>")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("exlude", "exclude"), 1);
        assert_eq!(distance("inotfiy", "inotify"), 2);
        assert_eq!(distance("", "ab"), 2);
        assert_eq!(distance("same", "same"), 0);
    }
}
