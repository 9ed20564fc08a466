//! Actions answered by a service outside the core (Beacon's `BeaconShowServer` and
//! `BeaconShowConfiguration`): the service registers itself by the names it answers, and every
//! transport finds it through [`crate::cmd::Command::parse`]. The core never names the service.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use astmanproxy_handlers::Message;

use crate::auth::Policy;

/// Who sent an action an [`Extension`] answers.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    /// The client's rights (an extension checks them per server).
    pub policy: &'a Policy,
    /// The logged-in user, if any.
    pub user: Option<&'a str>,
}

/// The answer of an [`Extension`]: the messages to send, in order (each carries the ActionID).
pub type Answer<'a> = Pin<Box<dyn Future<Output = Vec<Message>> + Send + 'a>>;

/// A service that answers some actions itself.
pub trait Extension: Send + Sync {
    /// The action names it answers (matched case-insensitively).
    fn names(&self) -> &[&'static str];
    /// Answers `action` (its `ActionID` copied into every message).
    fn answer<'a>(&'a self, action: &'a Message, caller: Caller<'a>) -> Answer<'a>;
}

/// The registered extensions. Cheap to clone.
#[derive(Clone, Default)]
pub struct Extensions(Arc<RwLock<Vec<Arc<dyn Extension>>>>);

impl Extensions {
    /// Adds `extension`; a name already registered keeps its first owner.
    pub fn register(&self, extension: Arc<dyn Extension>) {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).push(extension);
    }

    /// The extension answering the action `name`, if any.
    pub fn find(&self, name: &str) -> Option<Arc<dyn Extension>> {
        let name = name.trim();
        let all = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.iter().find(|e| e.names().iter().any(|n| n.eq_ignore_ascii_case(name))).cloned()
    }

    /// Forgets every extension (at shutdown: an extension may hold the hub that holds it).
    pub fn clear(&self) {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}
