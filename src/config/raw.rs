//! The raw `key = value` layer shared by the configuration and users files: a pure function
//! over text that keeps line numbers for error messages.

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// 1-based line number.
    pub line: usize,
    /// The key, lower-cased (keys are case-insensitive, as in 1.x).
    pub key: String,
    /// The value, trimmed, surrounding double quotes removed; case and inner spaces kept.
    pub value: String,
}

/// A line that is not `key = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Splits `text` into `key = value` lines. `;` and `#` start comments (outside double quotes);
/// blank lines are skipped.
///
/// # Errors
/// The first line that has no `=` or an empty key.
pub fn parse_lines(text: &str) -> Result<Vec<RawLine>, SyntaxError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let content = strip_comment(line).trim();
        if content.is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(SyntaxError { line: line_no, message: format!("expected `key = value`, found {content:?}") });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(SyntaxError { line: line_no, message: "missing key before `=`".to_string() });
        }
        out.push(RawLine { line: line_no, key: key.to_ascii_lowercase(), value: unquote(value.trim()).to_string() });
    }
    Ok(out)
}

/// One `[name]` section of a sectioned file (`beacon.conf`) and its `key = value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSection {
    /// The section name as written (`general`, a target name); empty for lines before the first
    /// header.
    pub name: String,
    /// 1-based line of the `[name]` header (0 for lines before the first header).
    pub line: usize,
    /// Its lines.
    pub lines: Vec<RawLine>,
}

/// Splits sectioned `key = value` text (`[section]` headers, as Asterisk's own `.conf` files).
///
/// # Errors
/// The first line that is neither a header nor `key = value`, or a header with an empty name.
pub fn parse_sections(text: &str) -> Result<Vec<RawSection>, SyntaxError> {
    let mut sections = vec![RawSection { name: String::new(), line: 0, lines: Vec::new() }];
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let content = strip_comment(line).trim();
        if let Some(header) = content.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']').map(str::trim).filter(|n| !n.is_empty()) else {
                return Err(SyntaxError { line: line_no, message: format!("expected `[section]`, found {content:?}") });
            };
            sections.push(RawSection { name: name.to_string(), line: line_no, lines: Vec::new() });
            continue;
        }
        let mut parsed = parse_lines(content).map_err(|e| SyntaxError { line: line_no, message: e.message })?;
        for raw in &mut parsed {
            raw.line = line_no;
        }
        if let Some(current) = sections.last_mut() {
            current.lines.extend(parsed);
        }
    }
    Ok(sections)
}

/// Removes a comment that starts with `;` or `#` outside double quotes.
pub fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' | '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Removes one pair of surrounding double quotes.
pub fn unquote(value: &str) -> &str {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_quotes() {
        let text = "; comment\n\n  ListenPort = 1234 ; trailing\nforcebanner = \"Asterisk Call Manager/5.0.1\"\n# x\nk=\"a;b\"\n";
        let lines = parse_lines(text).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], RawLine { line: 3, key: "listenport".into(), value: "1234".into() });
        assert_eq!(lines[1].value, "Asterisk Call Manager/5.0.1");
        assert_eq!(lines[2].value, "a;b");
    }

    #[test]
    fn line_without_equals_is_an_error() {
        let err = parse_lines("a = 1\nnonsense\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn sections_keep_their_lines() {
        let sections = parse_sections("top = 1\n[general] ; c\nenabled = yes\n\n[ pub ]\nurl = x\n").unwrap();
        assert_eq!(sections.len(), 3);
        assert_eq!((sections[0].name.as_str(), sections[0].lines.len()), ("", 1));
        assert_eq!((sections[1].name.as_str(), sections[1].line), ("general", 2));
        assert_eq!(sections[1].lines[0], RawLine { line: 3, key: "enabled".into(), value: "yes".into() });
        assert_eq!((sections[2].name.as_str(), sections[2].lines[0].line), ("pub", 6));
        assert_eq!(parse_sections("[x\n").unwrap_err().line, 1);
        assert_eq!(parse_sections("[a]\nnonsense\n").unwrap_err().line, 2);
    }
}
