//! From a changed path to the public URL to purge (`<sendurl base>` + `<regexurl>`).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use regex::bytes::Regex;
use sersync_plugin_sdk::{ConfigError, ConfigNode, RelPath};

use crate::common::options::path_regex;
use crate::common::percent::{encode, PATH_KEEP};
use sersync_plugin_sdk::config::attrs::attr_error;

/// How a path becomes a URL.
#[derive(Clone, Debug)]
pub(crate) struct UrlRule {
    /// `<sendurl base>`, without trailing `/`.
    base: String,
    /// `<regexurl regex="true" match>`: the URL is `base` + group 1 + the text after the match,
    /// taken from the absolute path. `None` (regex="false"): `base` + `/` + relative path.
    regex: Option<Regex>,
}

impl UrlRule {
    /// Reads `<sendurl base>` and `<regexurl regex match>` of one `<localpath>`.
    pub fn parse(localpath: &ConfigNode) -> Result<Self, ConfigError> {
        let sendurl = localpath.child("sendurl").ok_or_else(|| {
            localpath
                .error("refreshCDN: <localpath> has no <sendurl base=\"http://…\">")
                .with_hint("base is the public URL the watch root is served at, e.g. http://pic.example.com/cms")
        })?;
        let base = sendurl.required_attr("base")?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(attr_error(
                sendurl,
                "base",
                format!("<sendurl base=\"{base}\">: not an http:// or https:// URL"),
            )
            .with_hint("write the public URL the watch root is served at"));
        }
        let regex = match localpath.child("regexurl") {
            Some(node) if node.flag("regex") => {
                let re = path_regex(node, "match", false)?;
                if re.captures_len() < 2 {
                    return Err(attr_error(node, "match", "<regexurl match>: the regex needs a capture group")
                        .with_hint("the URL is base + the first group + the text after the match, e.g. match=\"site([/a-z0-9]*)\\.example\\.com/images\""));
                }
                Some(re)
            }
            _ => None,
        };
        Ok(UrlRule {
            base: base.trim_end_matches('/').to_string(),
            regex,
        })
    }

    /// The URL for `path` below `root`, path bytes percent-encoded; a directory's URL ends in
    /// `/`. `None` when the regex does not match (2.5.4 sent nothing then either).
    pub fn url(&self, root: &Path, path: &RelPath, is_dir: bool) -> Option<String> {
        let mut url = self.base.clone();
        match &self.regex {
            None => {
                url.push('/');
                url.push_str(&encode(path.as_bytes(), PATH_KEEP));
            }
            Some(re) => {
                let absolute = path.absolute(root);
                let absolute = absolute.as_os_str().as_bytes();
                let caps = re.captures(absolute)?;
                let group = caps.get(1).map_or(&b""[..], |g| g.as_bytes());
                let rest = &absolute[caps.get(0)?.end()..];
                url.push_str(&encode(group, PATH_KEEP));
                url.push_str(&encode(rest, PATH_KEEP));
            }
        }
        if is_dir && !url.ends_with('/') {
            url.push('/');
        }
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_node as el;

    fn rule(regex: &str, matching: &str) -> UrlRule {
        UrlRule::parse(&el(
            "localpath",
            &[("watch", "/data0/htdocs/cms.xoyo.com/site")],
            vec![
                el("sendurl", &[("base", "http://pic.xoyo.com/cms")], vec![]),
                el("regexurl", &[("regex", regex), ("match", matching)], vec![]),
            ],
        ))
        .unwrap()
    }

    #[test]
    fn plain_base_plus_relative_path() {
        let r = rule("false", "ignored(");
        let root = Path::new("/data0/htdocs/cms.xoyo.com/site");
        assert_eq!(
            r.url(root, &"a/b.jpg".into(), false).unwrap(),
            "http://pic.xoyo.com/cms/a/b.jpg"
        );
        assert_eq!(
            r.url(root, &"img".into(), true).unwrap(),
            "http://pic.xoyo.com/cms/img/"
        );
        assert_eq!(
            r.url(root, &RelPath::new(&b"a b\xff"[..]), false).unwrap(),
            "http://pic.xoyo.com/cms/a%20b%FF"
        );
    }

    #[test]
    fn regex_takes_group_one_and_the_rest() {
        let r = rule("true", "cms.xoyo.com/site([/a-zA-Z0-9]*).xoyo.com/images");
        let root = Path::new("/data0/htdocs/cms.xoyo.com/site");
        assert_eq!(
            r.url(root, &"/www.xoyo.com/images/a/1.jpg".into(), false)
                .unwrap(),
            "http://pic.xoyo.com/cms/www/a/1.jpg"
        );
        assert_eq!(r.url(root, &"other/x.jpg".into(), false), None);
    }
}
