//! Config errors that name the key path and the reason.

use std::path::PathBuf;

pub use crate::section::ConfigProblem;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}{}: {}", file_prefix(file), problem.key, problem.reason)]
    Parse { file: Option<PathBuf>, problem: ConfigProblem, line: usize },
    #[error("{}{} problem(s):\n{}", file_prefix(file), problems.len(), list(problems))]
    Invalid { file: Option<PathBuf>, problems: Vec<ConfigProblem> },
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default()
}

fn list(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    pub(super) fn in_file(self, path: &std::path::Path) -> ConfigError {
        match self {
            ConfigError::Parse { problem, line, .. } => ConfigError::Parse { file: Some(path.into()), problem, line },
            ConfigError::Invalid { problems, .. } => ConfigError::Invalid { file: Some(path.into()), problems },
            other => other,
        }
    }

    /// Every problem, each with its key path.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            ConfigError::Read { path, source } => {
                vec![ConfigProblem::new(path.display().to_string(), source.to_string())]
            }
            ConfigError::Parse { problem, .. } => vec![problem.clone()],
            ConfigError::Invalid { problems, .. } => problems.clone(),
        }
    }
}

/// Turns a TOML/serde error into a problem at a key path: the table header above the error and the
/// key on its line, since the parser reports a position rather than a path.
pub(super) fn parse_error(text: &str, err: &toml::de::Error) -> ConfigError {
    let mut start = err.span().map(|s| s.start).unwrap_or(0).min(text.len());
    // Errors inside tagged tables point at the whole table: move to the offending key's own line.
    // (an unknown field by its name, an unknown variant by its value).
    let quoted = err.message().split('`').nth(1);
    let is_line = |l: &str, name: &str| {
        if err.message().starts_with("unknown field") {
            l.trim_start().strip_prefix(name).is_some_and(|r| r.trim_start().starts_with('='))
        } else {
            l.split_once('=').is_some_and(|(_, v)| v.trim().trim_matches('"') == name)
        }
    };
    if let Some(name) =
        quoted.filter(|_| err.message().starts_with("unknown field") || err.message().starts_with("unknown variant"))
    {
        let mut at = start;
        for l in text[start..].split_inclusive('\n') {
            if is_line(l, name) {
                start = at;
                break;
            }
            at += l.len();
        }
    }
    let line = text[..start].matches('\n').count() + 1;
    let mut table = String::new();
    let mut array_counts: Vec<(String, usize)> = Vec::new();
    // The table headers above the error's line say which table it is in.
    for l in text[..start].lines() {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let n = match array_counts.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    array_counts.push((name.clone(), 0));
                    0
                }
            };
            table = format!("{name}[{n}]");
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
        }
    }
    let here = text[start..].lines().next().unwrap_or("");
    let line_text = text[..start].rsplit('\n').next().unwrap_or("").to_string() + here;
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let path = match (table.is_empty(), key) {
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{table}.{k}"),
        (false, None) => table,
        (true, None) => "(top level)".into(),
    };
    let reason = err.message().trim().replace('\n', " ");
    ConfigError::Parse { file: None, problem: ConfigProblem::new(path, format!("{reason} (line {line})")), line }
}
