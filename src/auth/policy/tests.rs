use std::path::Path;

use super::*;
use crate::auth::credentials::address_allowed;
use crate::config::Users;

fn user(text: &str) -> Arc<Policy> {
    let users = Users::parse(text, Path::new("t.users")).unwrap();
    Policy::for_user(users.get("u").unwrap())
}

fn event(pairs: &[(&str, &str)]) -> Arc<SharedEvent> {
    SharedEvent::new(Message::from_pairs(pairs.iter().copied()))
}

#[test]
fn write_classes_and_actions() {
    let p = user("[u]\nsecret = x\nwrite = call,reporting\n");
    let mut originate = Message::new().with("Action", "Originate");
    assert_eq!(p.check_action(&mut originate, "pbx"), Err(Denied::WriteClass));
    assert!(p.check_action(&mut Message::new().with("Action", "Redirect"), "pbx").is_ok());
    assert!(p.check_action(&mut Message::new().with("Action", "Ping"), "pbx").is_ok());
    assert_eq!(
        p.check_action(&mut Message::new().with("Action", "SomeModuleAction"), "pbx"),
        Err(Denied::UnknownAction)
    );
    let ro = user("[u]\nsecret = x\nreadonly = yes\n");
    assert!(ro.check_action(&mut Message::new().with("Action", "Hangup"), "pbx").is_err());
    assert!(ro.check_action(&mut Message::new().with("Action", "CoreStatus"), "pbx").is_ok());
    let list = user("[u]\nsecret = x\nactions = Ping, CoreStatus\n");
    assert!(list.check_action(&mut Message::new().with("Action", "corestatus"), "pbx").is_ok());
    assert_eq!(list.check_action(&mut Message::new().with("Action", "Command"), "pbx"), Err(Denied::NotInActions));
}

#[test]
fn server_pinning_both_ways() {
    let p = user("u=x,,,,,PBX2\n");
    assert_eq!(p.default_server(), Some("PBX2"));
    assert_eq!(p.check_action(&mut Message::new().with("Action", "Ping"), "pbx1"), Err(Denied::Server));
    assert!(p.check_action(&mut Message::new().with("Action", "Ping"), "pbx2").is_ok());
    assert!(!p.allows_event(&event(&[("Event", "X"), ("Server", "pbx1")])));
    assert!(p.allows_event(&event(&[("Event", "X"), ("Server", "pbx2")])));
}

#[test]
fn one_x_filters() {
    let p = user("u=x,SIP/10,OutCtx,InCtx,acct42,,yes,novar\n");
    let mut orig = Message::new().with("Action", "Originate").with("Channel", "sip/1001").with("Context", "OutCtx");
    assert!(p.check_action(&mut orig, "pbx").is_ok());
    assert_eq!(orig.get("Account"), Some("acct42"));
    let mut other = Message::new().with("Action", "Originate").with("Channel", "PJSIP/2000");
    assert_eq!(p.check_action(&mut other, "pbx"), Err(Denied::Channel));
    assert!(p.allows_event(&event(&[("Event", "Newchannel"), ("Channel", "SIP/1002-01"), ("Context", "InCtx")])));
    assert!(!p.allows_event(&event(&[("Event", "Newchannel"), ("Channel", "SIP/2002-01")])));
    assert!(!p.allows_event(&event(&[("Event", "Newchannel"), ("Channel", "SIP/1002-01"), ("Context", "inctx")])));
    // more_events: events without a channel pass.
    assert!(p.allows_event(&event(&[("Event", "Reload")])));
    assert!(!p.allows_event(&event(&[("Event", "VarSet"), ("Channel", "SIP/10-1")])));
    let cdr = user("u=x,,,,,,,cdronly\n");
    assert!(cdr.allows_event(&event(&[("Event", "Cdr")])));
    assert!(!cdr.allows_event(&event(&[("Event", "Newchannel")])));
}

#[test]
fn read_classes_and_event_filters() {
    let p = user(
        "[u]\nsecret = x\nread = call\neventfilter = Event: Newchannel\neventfilter = !Channel: Local/\n\
         eventfilter(action(exclude),name(Newchannel),header(CallerIDNum),method(starts_with)) = 9\n",
    );
    let call = |pairs: &[(&str, &str)]| {
        let mut v = vec![("Event", "Newchannel"), ("Privilege", "call,all")];
        v.extend_from_slice(pairs);
        event(&v)
    };
    assert!(p.allows_event(&call(&[("Channel", "PJSIP/1"), ("CallerIDNum", "100")])));
    assert!(!p.allows_event(&call(&[("Channel", "Local/1@x"), ("CallerIDNum", "100")])));
    assert!(!p.allows_event(&call(&[("Channel", "PJSIP/1"), ("CallerIDNum", "900")])));
    assert!(!p.allows_event(&event(&[("Event", "Hangup"), ("Privilege", "call,all")])));
    assert!(!p.allows_event(&event(&[("Event", "Newchannel"), ("Privilege", "system,all")])));
}

#[test]
fn sections_permit_deny_and_errors() {
    let users = Users::parse(
        "[general]\nenabled = yes\n[u]\nsecret = x\ndeny = 0.0.0.0/0.0.0.0\npermit = 10.0.0.0/255.0.0.0\n",
        Path::new("t"),
    )
    .unwrap();
    let u = users.get("u").unwrap();
    assert!(address_allowed(u, "10.1.2.3".parse().unwrap()));
    assert!(!address_allowed(u, "192.0.2.1".parse().unwrap()));
    assert!(address_allowed(&crate::config::User::new("v", "x"), "192.0.2.1".parse().unwrap()));
    assert!(users.get("general").is_none());
    for bad in ["[u]\nwrite = all\n", "[u]\nsecret = x\nbogus = 1\n", "[u]\nsecret=x\neventfilter = (\n"] {
        assert!(Users::parse(bad, Path::new("t")).is_err(), "{bad}");
    }
}
