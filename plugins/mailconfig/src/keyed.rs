//! Line-oriented files keyed by their first field: the Dovecot passwd-file
//! (`user:password:uid:gid:gecos:home:shell:extra`) and the Postfix map
//! (`key whitespace value`). Lines are kept verbatim; an edit replaces or
//! removes only the lines of the key it is about, so comments, blank lines and
//! other entries stay byte for byte as they were.

/// How the key ends on a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    /// `key:...` (Dovecot passwd-file).
    Colon,
    /// `key<space or tab>...` (Postfix lookup table source).
    Whitespace,
}

/// A file as lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedFile {
    separator: Separator,
    lines: Vec<String>,
}

impl KeyedFile {
    /// Parse a file's text (empty for a file that does not exist yet).
    pub fn parse(text: &str, separator: Separator) -> Self {
        KeyedFile { separator, lines: text.lines().map(str::to_string).collect() }
    }

    /// The key of a line, or `None` for comments, blank lines and continuations.
    fn key_of<'a>(&self, line: &'a str) -> Option<&'a str> {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with([' ', '\t']) {
            return None;
        }
        match self.separator {
            Separator::Colon => line.split(':').next(),
            Separator::Whitespace => line.split([' ', '\t']).next(),
        }
    }

    /// Whether `line` continues the previous logical line: Postfix reads a
    /// line that starts with whitespace and has text (not a comment) that way.
    fn is_continuation(&self, line: &str) -> bool {
        let trimmed = line.trim_start();
        self.separator == Separator::Whitespace
            && line.starts_with([' ', '\t'])
            && !trimmed.is_empty()
            && !trimmed.starts_with('#')
    }

    /// Line ranges `[start, end)` of every entry of `key`, continuations included.
    fn entries(&self, key: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.lines.len() {
            if self.key_of(&self.lines[i]) == Some(key) {
                let mut end = i + 1;
                while end < self.lines.len() && self.is_continuation(&self.lines[end]) {
                    end += 1;
                }
                out.push((i, end));
                i = end;
            } else {
                i += 1;
            }
        }
        out
    }

    /// The text after the key and its separator, for the first entry of `key`
    /// (its first line).
    pub fn get(&self, key: &str) -> Option<&str> {
        let (start, _) = *self.entries(key).first()?;
        let rest = &self.lines[start][key.len()..];
        Some(match self.separator {
            Separator::Colon => rest.strip_prefix(':').unwrap_or(rest),
            Separator::Whitespace => rest.trim_start_matches([' ', '\t']),
        })
    }

    /// Whether an entry for `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        !self.entries(key).is_empty()
    }

    /// Every key, in file order.
    pub fn keys(&self) -> Vec<&str> {
        self.lines.iter().filter_map(|l| self.key_of(l)).collect()
    }

    /// Replace the entry of `key` with the single line `line` (later duplicate
    /// entries go too: the first one wins in Dovecot and Postfix alike, the rest
    /// would only mislead a reader), or append it when there is none.
    pub fn set(&mut self, key: &str, line: String) {
        let entries = self.entries(key);
        let Some(&(first, _)) = entries.first() else {
            self.lines.push(line);
            return;
        };
        for &(start, end) in entries.iter().rev() {
            self.lines.drain(start..end);
        }
        self.lines.insert(first, line);
    }

    /// Remove every entry of `key`; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let entries = self.entries(key);
        for &(start, end) in entries.iter().rev() {
            self.lines.drain(start..end);
        }
        !entries.is_empty()
    }

    /// The file's text: the lines, each ending with a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "# managed by hand\nbob@example.org:{PLAIN}x::::::\n\nalice@example.org:{SHA512-CRYPT}$6$a$b:1000:1000::/home/alice::\n";

    #[test]
    fn reads_entries_and_skips_comments() {
        let f = KeyedFile::parse(PASSWD, Separator::Colon);
        assert_eq!(f.keys(), ["bob@example.org", "alice@example.org"]);
        assert_eq!(
            f.get("alice@example.org"),
            Some("{SHA512-CRYPT}$6$a$b:1000:1000::/home/alice::")
        );
        assert_eq!(f.get("carol@example.org"), None);
        assert_eq!(f.render(), PASSWD);
    }

    #[test]
    fn edits_touch_only_their_line() {
        let mut f = KeyedFile::parse(PASSWD, Separator::Colon);
        f.set("bob@example.org", "bob@example.org:{PLAIN}y::::::".into());
        f.set("carol@example.org", "carol@example.org:{PLAIN}z".into());
        assert!(f.remove("alice@example.org"));
        assert!(!f.remove("nobody@example.org"));
        assert_eq!(
            f.render(),
            "# managed by hand\nbob@example.org:{PLAIN}y::::::\n\ncarol@example.org:{PLAIN}z\n"
        );
    }

    #[test]
    fn postfix_maps_split_on_whitespace_and_keep_continuations() {
        let text = "alice@example.org\texample.org/alice/\nbob@example.org   example.org/bob/\n  continued\n# end\n";
        let mut f = KeyedFile::parse(text, Separator::Whitespace);
        assert_eq!(f.keys(), ["alice@example.org", "bob@example.org"]);
        assert_eq!(f.get("bob@example.org"), Some("example.org/bob/"));
        f.set("alice@example.org", "alice@example.org example.org/a/".into());
        assert_eq!(
            f.render(),
            "alice@example.org example.org/a/\nbob@example.org   example.org/bob/\n  continued\n# end\n"
        );
        // An entry goes with its continuation lines.
        assert!(f.remove("bob@example.org"));
        assert_eq!(f.render(), "alice@example.org example.org/a/\n# end\n");
    }

    #[test]
    fn set_drops_later_duplicates_of_the_key() {
        let mut f = KeyedFile::parse("a:1\nb:2\na:3\n", Separator::Colon);
        f.set("a", "a:9".into());
        assert_eq!(f.render(), "a:9\nb:2\n");
    }
}
