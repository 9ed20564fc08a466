//! `Action: Login`: checked by [`auth::login`] (the same rules as every transport's login).

use astmanproxy_handlers::{Message, RawValue};

use super::state::{ClientState, Flow};
use crate::auth::{self, Credentials, LoginError};
use crate::event::ClassMask;
use crate::route::sink::ToClient;

/// Logs the client in, or answers the failure and closes.
pub async fn apply(client: &mut ClientState, message: &Message, id: Option<&RawValue>) -> Flow {
    let username = message.get("Username").unwrap_or_default().trim();
    let credentials = if message.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
        Credentials::AmiMd5 { challenge: client.challenge.as_deref(), key: message.get("Key") }
    } else {
        Credentials::AmiSecret(message.get("Secret").unwrap_or_default())
    };
    let outcome =
        auth::login(&client.hub.auth_gate(&client.shared.labels()), username, client.peer.ip(), credentials).await;
    // A challenge is good for one login attempt only.
    client.challenge = None;
    let grant = match outcome {
        Ok(grant) => grant,
        Err(error) => {
            let text = match error {
                LoginError::LockedOut(lockout) => lockout.message(),
                _ => "Authentication failed",
            };
            client.user = None;
            client.reply("Error", id, Some(text));
            client.sink.send(ToClient::Close);
            return Flow::Close;
        }
    };
    let mask = message.get("Events").map_or(ClassMask::ALL, ClassMask::parse);
    client.start_session(&grant.user, grant.policy, mask);
    // The position is taken before the answer is queued: every event published from the
    // moment the login succeeded reaches the client, after its `Success`.
    let position = client.hub.subscribe();
    client.reply("Success", id, Some("Authentication accepted"));
    let system = ClassMask::parse("system");
    // FullyBooted means booted: at once when the client's default server is ready; else
    // when that server connects (the upstream session announces it then, see `upstream`).
    let ready = client
        .hub
        .server(client.policy.default_server())
        .is_some_and(|s| s.status() == crate::upstream::Status::Connected);
    if ready && mask.allows(system) && client.policy.reads(system) {
        let uptime = client.hub.uptime_secs().to_string();
        let booted = Message::new()
            .with("Event", "FullyBooted")
            .with("Privilege", "system,all")
            .with("Uptime", uptime.clone())
            .with("LastReload", uptime)
            .with("Status", "Fully Booted");
        client.sink.send_message(booted);
    }
    client.sink.send(ToClient::Subscribe(position));
    Flow::Continue
}
