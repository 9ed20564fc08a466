//! Gathering Beacon data from one server over AMI, through the same route as any client (so it
//! never blocks client traffic), one action at a time, and rate-limited per server by a cache.

use std::time::Duration;

use astmanproxy_handlers::Message;

use super::data::{Posting, ServerData};
use super::parse::{count_before, parse_modules, parse_version_line, version_number};
use crate::upstream::UpstreamHandle;

/// How long one gathering action may take.
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a server's Beacon data could not be gathered: a report is never made of some answers and
/// some blanks.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// The action got no answer from the server (down, dropped, queue full, over a limit).
    #[error("{action}: {source}")]
    Call {
        /// The action (or the CLI command).
        action: String,
        /// Why.
        source: crate::route::CallError,
    },
    /// No answer within [`ACTION_TIMEOUT`].
    #[error("no answer from {server} within {ACTION_TIMEOUT:?}")]
    Timeout {
        /// The server.
        server: String,
    },
    /// The server answered `Response: Error` (permission denied, a timeout upstream...).
    #[error("{action}: {message}")]
    Refused {
        /// The action (or the CLI command).
        action: String,
        /// The answer's `Message`.
        message: String,
    },
    /// The answer had no response in it.
    #[error("{action}: no response")]
    NoResponse {
        /// The action (or the CLI command).
        action: String,
    },
}

/// Asks the five actions and builds the data.
///
/// # Errors
/// The server is down, an action is answered `Response: Error`, or an answer does not come
/// within 10 s.
pub async fn gather(server: &UpstreamHandle) -> Result<ServerData, GatherError> {
    let answer = async |action: Message| -> Result<Message, GatherError> {
        let what = action.get("Command").or(action.action()).unwrap_or_default().to_string();
        let answer = match tokio::time::timeout(ACTION_TIMEOUT, server.call(action)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(source)) => return Err(GatherError::Call { action: what, source }),
            Err(_) => return Err(GatherError::Timeout { server: server.name().to_string() }),
        };
        match answer.messages.into_iter().find(|m| m.response().is_some()) {
            Some(m) if m.response().is_some_and(|r| r.eq_ignore_ascii_case("Error")) => {
                Err(GatherError::Refused { action: what, message: m.get("Message").unwrap_or("error").to_string() })
            }
            Some(m) => Ok(m),
            None => Err(GatherError::NoResponse { action: what }),
        }
    };
    let command = |cmd: &str| Message::new().with("Action", "Command").with("Command", cmd);
    let settings = answer(Message::new().with("Action", "CoreSettings")).await?;
    let status = answer(Message::new().with("Action", "CoreStatus")).await?;
    let version = answer(command("core show version")).await?;
    let modules = answer(command("module show")).await?;
    let calls = answer(command("core show calls")).await?;

    let version_name = settings.get("AsteriskVersion").unwrap_or_default().to_string();
    let version_lines = output_lines(&version);
    let (_, machine, os) = parse_version_line(version_lines.first().copied().unwrap_or_default());
    let call_lines = output_lines(&calls);
    let join = |date: &str, time: &str| {
        format!("{} {}", status.get(date).unwrap_or_default(), status.get(time).unwrap_or_default()).trim().to_string()
    };
    Ok(ServerData {
        server: server.name().to_string(),
        version_number: version_number(&version_name),
        version_name,
        modules: parse_modules(&output_lines(&modules)),
        startup_time: join("CoreStartupDate", "CoreStartupTime"),
        last_reload_time: join("CoreReloadDate", "CoreReloadTime"),
        active_calls: count_before(&call_lines, "active"),
        processed_calls: count_before(&call_lines, "processed"),
        os_name: os,
        os_machine: machine,
        posting: Posting::default(),
    })
}

/// The CLI lines of a Command answer: `Output:` headers (Asterisk 14+) or the raw body (11-13).
fn output_lines(answer: &Message) -> Vec<&str> {
    match answer.body() {
        Some(body) => body.iter().map(String::as_str).collect(),
        None => answer.get_all("Output").collect(),
    }
}
