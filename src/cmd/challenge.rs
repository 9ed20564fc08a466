//! `Action: Challenge`: a fresh nonce for an MD5 login.

use astmanproxy_handlers::{Message, RawValue};

use super::state::ClientState;

/// Answers a nonce (only for `AuthType: md5`) and keeps it for the next login attempt.
pub fn apply(client: &mut ClientState, message: &Message, id: Option<&RawValue>) {
    if !message.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
        client.reply("Error", id, Some("Must specify AuthType"));
        return;
    }
    // Unpredictable and fresh for every challenge (1.x used an unseeded rand()).
    let nonce = (rand::random::<u64>() % 1_000_000_000_000).to_string();
    let mut answer = Message::response_with_id("Success", id, None);
    answer.push("Challenge", nonce.clone());
    client.challenge = Some(nonce);
    client.sink.send_message(answer);
}
