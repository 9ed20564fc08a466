//! A user's `eventfilter` lines, compiled: which events they let through.

use astmanproxy_handlers::{Message, OutputFormat};
use regex::Regex;

use crate::config::{FilterMethod, FilterRule};
use crate::event::SharedEvent;

/// One compiled `eventfilter` ([`FilterRule`] is the line as checked when the file was loaded).
#[derive(Debug, Clone)]
pub struct EventFilter {
    pub(super) exclude: bool,
    name: Option<String>,
    header: Option<String>,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Regex(Regex),
    Exact(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Any,
}

impl EventFilter {
    /// Compiles a checked rule.
    ///
    /// # Errors
    /// The rule's regex does not compile (the users file checks it, so only a rule built by hand).
    pub fn compile(rule: &FilterRule) -> Result<EventFilter, regex::Error> {
        let value = rule.pattern.clone();
        let matcher = match rule.method {
            FilterMethod::Regex => Matcher::Regex(Regex::new(&rule.pattern)?),
            FilterMethod::Exact => Matcher::Exact(value),
            FilterMethod::StartsWith => Matcher::StartsWith(value),
            FilterMethod::EndsWith => Matcher::EndsWith(value),
            FilterMethod::Contains => Matcher::Contains(value),
            FilterMethod::Any => Matcher::Any,
        };
        Ok(EventFilter { exclude: rule.exclude, name: rule.name.clone(), header: rule.header.clone(), matcher })
    }

    /// Whether the filter selects `event` (`message` is its decoded form).
    pub(super) fn matches(&self, message: &Message, event: &SharedEvent) -> bool {
        if let Some(name) = &self.name {
            if !message.event().is_some_and(|e| e.eq_ignore_ascii_case(name)) {
                return false;
            }
        }
        let text_of_event;
        let subject: &str = match &self.header {
            Some(h) => match message.get(h) {
                Some(v) => v,
                None => return false,
            },
            None => {
                text_of_event = String::from_utf8_lossy(event.bytes(OutputFormat::Standard));
                &text_of_event
            }
        };
        match &self.matcher {
            Matcher::Regex(r) => r.is_match(subject),
            Matcher::Exact(v) => subject == v,
            Matcher::StartsWith(v) => subject.starts_with(v.as_str()),
            Matcher::EndsWith(v) => subject.ends_with(v.as_str()),
            Matcher::Contains(v) => subject.contains(v.as_str()),
            Matcher::Any => true,
        }
    }
}
