//! Reading a `Server` body: JSON that must be an object, tolerant of missing and unknown fields,
//! within the field limits of [`Limits`].

use astmanproxy_beacon_wire::wire::ServerReport;

/// Field limits of a `Server` body (the size of the whole body is capped before it is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries in `asterisk.modules`.
    pub max_modules: usize,
    /// Longest string field, in bytes.
    pub max_string: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_modules: 1000, max_string: 256 }
    }
}

/// Why a `Server` body is refused; its text is the short sentence the client gets.
#[derive(Debug, thiserror::Error)]
pub enum InvalidReport {
    /// Not JSON.
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    /// JSON, but not an object.
    #[error("the body must be a JSON object (a Server)")]
    NotAnObject,
    /// An object whose fields have the wrong types.
    #[error("not a Server: {0}")]
    Shape(serde_json::Error),
    /// More modules than `max_modules`.
    #[error("too many modules: {count} (at most {max})")]
    TooManyModules {
        /// Modules in the body.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A string field over `max_string` bytes.
    #[error("{field} is too long: {len} bytes (at most {max})")]
    TooLong {
        /// The field's path.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Parses and checks a `Server` body. The error is a short sentence for the client.
///
/// # Errors
/// Invalid JSON, a JSON value that is not an object, fields of the wrong type, or a field past
/// its limit.
pub fn parse_server(body: &[u8], limits: &Limits) -> Result<ServerReport, InvalidReport> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(InvalidReport::Json)?;
    if !value.is_object() {
        return Err(InvalidReport::NotAnObject);
    }
    let report: ServerReport = serde_json::from_value(value).map_err(InvalidReport::Shape)?;
    check(&report, limits)?;
    Ok(report)
}

fn check(r: &ServerReport, limits: &Limits) -> Result<(), InvalidReport> {
    let modules = &r.asterisk.modules;
    if modules.len() > limits.max_modules {
        return Err(InvalidReport::TooManyModules { count: modules.len(), max: limits.max_modules });
    }
    let long = |field: &'static str, value: &str| -> Result<(), InvalidReport> {
        if value.len() > limits.max_string {
            Err(InvalidReport::TooLong { field, len: value.len(), max: limits.max_string })
        } else {
            Ok(())
        }
    };
    long("id", r.id.as_deref().unwrap_or_default())?;
    long("private_name", r.private_name.as_deref().unwrap_or_default())?;
    long("asterisk.version.name", &r.asterisk.version.name)?;
    long("asterisk.stats.run_time.startup_time", &r.asterisk.stats.run_time.startup_time)?;
    long("asterisk.stats.run_time.last_reload_time", &r.asterisk.stats.run_time.last_reload_time)?;
    let os = &r.operating_system;
    long("operating_system.sys_name", &os.sys_name)?;
    long("operating_system.release", &os.release)?;
    long("operating_system.version", &os.version)?;
    long("operating_system.machine", &os.machine)?;
    for m in modules {
        long("asterisk.modules[].name", &m.name)?;
        long("asterisk.modules[].description", &m.description)?;
        long("asterisk.modules[].status", &m.status)?;
        long("asterisk.modules[].support_level", &m.support_level)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked() {
        let l = Limits { max_modules: 2, max_string: 8 };
        assert!(parse_server(b"{}", &l).is_ok());
        assert!(parse_server(br#"{"asterisk":{"version":{"name":"22.1.0"}},"new_field":[1]}"#, &l).is_ok());
        for (body, needle) in [
            (&b"nope"[..], "invalid JSON"),
            (b"[]", "JSON object"),
            (br#"{"asterisk":{"version":{"number":"x"}}}"#, "not a Server"),
            (br#"{"asterisk":{"version":{"number":-1}}}"#, "not a Server"),
            (br#"{"asterisk":{"modules":[{},{},{}]}}"#, "too many modules"),
            (br#"{"private_name":"123456789"}"#, "private_name is too long"),
            (br#"{"asterisk":{"modules":[{"name":"123456789"}]}}"#, "modules[].name"),
        ] {
            let err = parse_server(body, &l).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
