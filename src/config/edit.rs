//! Editing a config file's text: one key set, every other key kept (comments are not).

/// Why a key cannot be set in a config's text.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("not TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("{0} is not a table")]
    NotATable(String),
    #[error("writing TOML: {0}")]
    Write(#[from] toml::ser::Error),
}

/// `text` with the dotted `key` (tables made where missing) set to `value`.
///
/// # Errors
/// The text is not TOML, or a table on the key's path is something else.
pub fn with_setting(text: &str, key: &str, value: toml::Value) -> Result<String, EditError> {
    let mut doc: toml::Table = text.parse()?;
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut table = &mut doc;
    let mut path = String::new();
    for part in parts {
        path = if path.is_empty() { part.to_string() } else { format!("{path}.{part}") };
        table = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| EditError::NotATable(path.clone()))?;
    }
    table.insert(last.into(), value);
    Ok(toml::to_string(&doc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_set_where_it_belongs_and_the_rest_kept() {
        let text = "[detector]\nmodel = \"jungfrau-1if\"\n[trigger]\nkind = \"tract\"\n";
        let edited = with_setting(text, "trigger.tract.threshold", 0.25.into()).unwrap();
        let doc: toml::Table = edited.parse().unwrap();
        assert_eq!(doc["trigger"]["tract"]["threshold"].as_float(), Some(0.25));
        assert_eq!(doc["trigger"]["kind"].as_str(), Some("tract"));
        assert_eq!(doc["detector"]["model"].as_str(), Some("jungfrau-1if"));
        assert!(matches!(
            with_setting("trigger = 3\n", "trigger.spots.min_spots", 1.into()),
            Err(EditError::NotATable(_))
        ));
    }
}
