//! What the node is about to do, in one sentence: the "pending action" of
//! `upsilon status`. A pure function of the policy, the UPS views and what the
//! executor did, so its wording is tested directly.

use std::time::SystemTime;

use upsilon_proto::v1 as pb;

use crate::config::ExecutorMode;
use crate::events::EventKind;
use crate::executor::ExecRecord;
use crate::node::UpsView;
use crate::pb_impl::unix_ms;
use crate::policy::{Policy, ShutdownRule};

fn rule_words(rule: ShutdownRule, p: &Policy) -> String {
    match rule {
        ShutdownRule::Timeout => format!("on battery longer than TIMEOUT ({} s)", p.timeout),
        ShutdownRule::LowBattery => "the UPS signalled low battery".into(),
        ShutdownRule::BatteryLevel => {
            format!("charge fell to BATTERYLEVEL ({} %)", p.battery_level)
        }
        ShutdownRule::Runtime => format!("runtime fell to MINUTES ({} min)", p.minutes),
        ShutdownRule::Emergency => "battery failure (low battery while on line)".into(),
        ShutdownRule::CommLostOnBattery => {
            format!("UPS silent for {} s while on battery", p.dead_time)
        }
    }
}

/// The pending action for a set of UPS views.
pub fn pending_action(
    policy: &Policy,
    views: &[UpsView],
    records: &[ExecRecord],
    mode: ExecutorMode,
) -> pb::PendingAction {
    let commands: Vec<String> = records.iter().map(ExecRecord::summary).collect();
    let base = pb::PendingAction {
        executor_mode: mode.as_str().into(),
        shutdown_handled: records.iter().any(|r| r.action == "shutdown"),
        commands,
        ..Default::default()
    };
    // A shutdown that has started wins: it is latched.
    if let Some((v, (rule, at))) = views
        .iter()
        .filter_map(|v| v.shutdown.map(|s| (v, s)))
        .min_by_key(|(_, (_, at))| *at)
    {
        let how = match mode {
            ExecutorMode::Record => "record mode: the shutdown command is recorded, not run",
            ExecutorMode::Live => "the shutdown command was run",
        };
        return pb::PendingAction {
            kind: pb::ActionKind::ShuttingDown as i32,
            reason: EventKind::from_rule(rule).name().to_string(),
            detail: format!(
                "shutting down: {} ({}); {how}",
                rule_words(rule, policy),
                v.name
            ),
            since_unix_ms: unix_ms(at),
            ..base
        };
    }
    let on_batt: Vec<&UpsView> = views
        .iter()
        .filter(|v| v.on_battery || v.comm_lost && was_on_battery(v))
        .collect();
    if let Some(v) = on_batt.first() {
        let mut parts = Vec::new();
        let r = v.reading.as_ref();
        let charge = r.and_then(|r| r.charge_percent);
        let runtime = r.and_then(|r| r.runtime_s);
        parts.push(format!(
            "charge <= {} %{}",
            policy.battery_level,
            charge.map_or(String::new(), |c| format!(" (now {c:.1} %)"))
        ));
        parts.push(format!(
            "runtime <= {} min{}",
            policy.minutes,
            runtime.map_or(String::new(), |s| format!(" (now {:.1} min)", s / 60.0))
        ));
        if policy.timeout > 0 {
            parts.push(format!("{} s on battery", policy.timeout));
        }
        parts.push("or the UPS signals low battery".into());
        let mut detail = format!(
            "{} on battery for {} s: shutdown when {}",
            v.name,
            v.time_on_battery.as_secs(),
            parts.join(", ")
        );
        if v.comm_lost {
            detail = format!(
                "{} not answering while on battery: shutdown after {} s without contact",
                v.name, policy.dead_time
            );
        }
        return pb::PendingAction {
            kind: pb::ActionKind::Watching as i32,
            detail,
            ..base
        };
    }
    let lost: Vec<&str> = views
        .iter()
        .filter(|v| v.comm_lost)
        .map(|v| v.name.as_str())
        .collect();
    let detail = if views.is_empty() {
        "no UPS configured on this node".to_string()
    } else if !lost.is_empty() {
        format!(
            "no action: {} not answering, last known on line",
            lost.join(", ")
        )
    } else {
        "no action: all UPSes on line".to_string()
    };
    pb::PendingAction {
        kind: pb::ActionKind::None as i32,
        detail,
        ..base
    }
}

fn was_on_battery(v: &UpsView) -> bool {
    v.reading.as_ref().is_some_and(|r| r.flags.on_battery)
}

/// Current time helper kept here so callers need not import SystemTime.
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{UpsFlags, UpsReading};
    use std::time::Duration;

    fn view(on_battery: bool) -> UpsView {
        let mut r = UpsReading::empty(
            UpsFlags {
                on_battery,
                online: !on_battery,
                battery_present: true,
                ..Default::default()
            },
            SystemTime::now(),
        );
        r.charge_percent = Some(63.0);
        r.runtime_s = Some(600.0);
        UpsView {
            name: "ups1".into(),
            driver: "sim".into(),
            reading: Some(r),
            statflag: 0,
            comm_lost: false,
            comm_error: None,
            on_battery,
            time_on_battery: Duration::from_secs(12),
            transfers: 1,
            shutdown: None,
        }
    }

    #[test]
    fn on_line_means_no_action() {
        let a = pending_action(
            &Policy::default(),
            &[view(false)],
            &[],
            ExecutorMode::Record,
        );
        assert_eq!(a.kind, pb::ActionKind::None as i32);
        assert_eq!(a.detail, "no action: all UPSes on line");
    }

    #[test]
    fn on_battery_names_the_thresholds_and_current_values() {
        let a = pending_action(&Policy::default(), &[view(true)], &[], ExecutorMode::Record);
        assert_eq!(a.kind, pb::ActionKind::Watching as i32);
        assert_eq!(
            a.detail,
            "ups1 on battery for 12 s: shutdown when charge <= 10 % (now 63.0 %), runtime <= 5 min (now 10.0 min), or the UPS signals low battery"
        );
    }

    #[test]
    fn shutdown_is_reported_with_reason_and_mode() {
        let mut v = view(true);
        v.shutdown = Some((ShutdownRule::BatteryLevel, SystemTime::now()));
        let a = pending_action(&Policy::default(), &[v], &[], ExecutorMode::Record);
        assert_eq!(a.kind, pb::ActionKind::ShuttingDown as i32);
        assert_eq!(a.reason, "loadlimit");
        assert!(
            a.detail.contains("charge fell to BATTERYLEVEL (10 %)"),
            "{}",
            a.detail
        );
        assert!(a.detail.contains("recorded, not run"), "{}", a.detail);
    }
}
