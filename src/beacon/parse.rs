//! Parsing the AMI answers Beacon reads (real Asterisk 22 output, older layouts tolerated).

use super::data::Module;

/// `22.10.1` -> 221001; `18.9-cert3` -> 180900; unknown -> 0.
pub fn version_number(name: &str) -> u64 {
    let digits: Vec<u64> = name
        .split(['.', '-'])
        .take(3)
        .map(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0))
        .collect();
    match digits.as_slice() {
        [major, minor, patch, ..] => major * 10_000 + minor * 100 + patch,
        [major, minor] => major * 10_000 + minor * 100,
        [major] => major * 10_000,
        [] => 0,
    }
}

/// Parses the fixed-width `module show` table. Column starts come from the header line
/// (`Module`, `Description`, `Use Count`, `Status`, `Support Level`); a missing `Support Level`
/// column (older Asterisk) leaves it empty. The count line at the end is skipped.
pub fn parse_modules(lines: &[&str]) -> Vec<Module> {
    let Some(header_at) = lines.iter().position(|l| l.starts_with("Module") && l.contains("Description")) else {
        return Vec::new();
    };
    let header = lines[header_at];
    let col = |name: &str| header.find(name);
    let (Some(desc), Some(status)) = (col("Description"), col("Status")) else { return Vec::new() };
    let use_count = col("Use Count").unwrap_or(status);
    let has_support = col("Support Level").is_some();
    let cut = |line: &str, from: usize, to: usize| line.get(from..to.min(line.len())).unwrap_or("").trim().to_string();
    let mut modules = Vec::new();
    for line in &lines[header_at + 1..] {
        if line.trim().is_empty() || line.ends_with("modules loaded") || line.len() <= desc {
            continue;
        }
        let rest = line.get(status..).unwrap_or("").trim();
        let (status_text, support) = if has_support {
            match rest.rsplit_once("  ") {
                Some((s, level)) => (s.trim().to_string(), level.trim().to_string()),
                None => (rest.to_string(), String::new()),
            }
        } else {
            (rest.to_string(), String::new())
        };
        modules.push(Module {
            name: cut(line, 0, desc),
            description: cut(line, desc, use_count),
            status: status_text,
            support_level: support,
        });
    }
    modules
}

/// `Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-...` ->
/// (`22.10.1`, `x86_64`, `Linux`).
pub fn parse_version_line(line: &str) -> (String, String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let version = words.iter().position(|w| *w == "Asterisk").and_then(|i| words.get(i + 1)).unwrap_or(&"").to_string();
    let machine = words.windows(3).find(|w| w[0] == "on" && w[1] == "a").map(|w| w[2].to_string()).unwrap_or_default();
    let os = words.windows(2).find(|w| w[0] == "running").map(|w| w[1].to_string()).unwrap_or_default();
    (version, machine, os)
}

/// `0 active calls` / `1 call processed` -> the number before `word`.
pub fn count_before(lines: &[&str], word: &str) -> u64 {
    lines
        .iter()
        .find(|l| l.contains(word))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(version_number("22.10.1"), 221_001);
        assert_eq!(version_number("18.9-cert3"), 180_900);
        assert_eq!(version_number("GIT-master"), 0);
    }

    #[test]
    fn modules_from_the_real_capture() {
        let raw = include_str!("../../tests/fixtures/raw/08-command-module-show.conn1.s2c.bin");
        let lines: Vec<&str> =
            raw.lines().filter_map(|l| l.strip_prefix("Output: ")).map(|l| l.trim_end_matches('\r')).collect();
        let modules = parse_modules(&lines);
        assert_eq!(modules.len(), 258);
        assert_eq!(
            modules[0],
            Module {
                name: "acl".into(),
                description: "Named ACL system".into(),
                status: "Running".into(),
                support_level: "core".into()
            }
        );
        let agent = modules.iter().find(|m| m.name == "app_agent_pool.so").unwrap();
        assert_eq!((agent.status.as_str(), agent.support_level.as_str()), ("Not Running", "core"));
        assert!(modules.iter().any(|m| m.support_level == "deprecated"));
    }

    #[test]
    fn older_layout_without_support_level() {
        let lines = [
            "Module                         Description                              Use Count  Status",
            "res_x.so                       Something                                0          Running",
            "1 modules loaded",
        ];
        let modules = parse_modules(&lines);
        assert_eq!(modules.len(), 1);
        assert_eq!((modules[0].status.as_str(), modules[0].support_level.as_str()), ("Running", ""));
    }

    #[test]
    fn version_line_and_calls() {
        let (v, m, os) = parse_version_line(
            "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-22 10:27:58 UTC",
        );
        assert_eq!((v.as_str(), m.as_str(), os.as_str()), ("22.10.1", "x86_64", "Linux"));
        assert_eq!(count_before(&["1 active call", "7 calls processed"], "processed"), 7);
    }
}
