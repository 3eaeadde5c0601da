//! A host's power: [`supply`] from its feeds and `min_supplies` (NUT's MINSUPPLIES),
//! served as a UPS status, when a trigger fires for it, apcupsd's thresholds on it, and
//! the local fallback's rule.

use super::super::records::{NodeRecord, UpsRecord};
use super::super::state::PowerState;
use super::model::{Plan, Trigger};

/// A host's power, from its feeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Supply {
    /// Fewer than `min_supplies` feeds are on line.
    pub on_battery: bool,
    /// Since when (Unix ms), when on battery.
    pub on_battery_since_ms: Option<i64>,
    /// Charge and runtime of the `min_supplies`-th best feed.
    pub charge: Option<f64>,
    pub runtime_s: Option<f64>,
    /// Why this supply is an emergency, if it is.
    pub emergency: Option<String>,
    /// The feed whose charge and runtime count (the `min_supplies`-th best).
    pub feed: Option<String>,
}

pub(super) fn feed_on_line(u: &UpsRecord) -> bool {
    !u.status.on_battery && !u.status.comm_lost && !u.stale
}

/// A host's supply. Hosts without feeds have none (`None`): no trigger reads them.
pub fn supply(node: &NodeRecord, state: &PowerState, plan: &Plan, now_ms: i64) -> Option<Supply> {
    if node.feeds.is_empty() {
        return None;
    }
    // Only UPSes the cluster has heard of count: a feed that never reported (a node
    // starting, or a misspelt name, which `plan check` reports) must not start an outage.
    let feeds: Vec<Option<&UpsRecord>> = node
        .feeds
        .iter()
        .filter_map(|f| state.upses.get(f))
        .map(Some)
        .collect();
    if feeds.is_empty() {
        return None;
    }
    let need = (node.min_supplies.max(1) as usize).min(feeds.len());
    let on_line = feeds.iter().filter(|u| u.is_some_and(feed_on_line)).count();
    let on_battery = on_line < need;
    // Rank feeds best first: on line, then by runtime.
    let mut ranked: Vec<(bool, f64, Option<f64>, Option<&str>)> = feeds
        .iter()
        .map(|u| match u {
            Some(u) => {
                let r = u.status.reading.as_ref();
                (
                    feed_on_line(u),
                    r.and_then(|r| r.runtime_s).unwrap_or(0.0),
                    r.and_then(|r| r.charge_percent),
                    Some(u.name.as_str()),
                )
            }
            None => (false, 0.0, None, None),
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let nth = ranked.get(need - 1).copied();
    let feed = nth.and_then(|n| n.3).map(str::to_string);
    let since = feeds
        .iter()
        .flatten()
        .filter(|u| !feed_on_line(u))
        .filter_map(|u| u.on_battery_since_ms.or(u.comm_lost_since_ms))
        .max();
    let mut emergency = None;
    if on_battery {
        for u in feeds.iter().flatten() {
            let low = u
                .status
                .reading
                .as_ref()
                .is_some_and(|r| r.flags.low_battery)
                && u.status.on_battery;
            if low {
                emergency = Some(format!("{} signals low battery", u.name));
            } else if (u.stale || u.status.comm_lost)
                && u.status.on_battery
                && u.comm_lost_since_ms
                    .is_some_and(|t| now_ms - t >= plan.dead_time_s as i64 * 1000)
            {
                emergency = Some(format!(
                    "{} on battery and silent for more than {} s",
                    u.name, plan.dead_time_s
                ));
            }
        }
        if let Some((_, rt, _, _)) = nth
            && emergency.is_none()
            && rt < plan.runtime_floor_s as f64
        {
            emergency = Some(format!(
                "runtime {rt:.0} s is under the floor of {} s",
                plan.runtime_floor_s
            ));
        }
    }
    Some(Supply {
        on_battery,
        on_battery_since_ms: if on_battery { since } else { None },
        charge: nth.and_then(|n| n.2),
        runtime_s: nth.map(|n| n.1),
        emergency,
        feed,
    })
}

/// A supply as a UPS status, as a host fed by it reads it (NIS for a member without a
/// UPS, or a legacy host): the status of the feed that counts, as its owner reported it
/// (every reading, and the UPS's own bits: low battery, replace battery, overload...,
/// and the power event's FASTPOLL and ONBATT_MSG), with on line or on battery as the
/// supply is. What belongs to the owner's host alone (its comm state, its shutdown
/// decision) is left out. A host must never read less than the truth that keeps it
/// alive: a low-battery signal reaches every host the UPS feeds.
pub fn supply_status(sup: &Supply, state: &PowerState, now_ms: i64) -> crate::view::UpsStatus {
    use crate::reading::{UpsReading, statflag};
    let feed = sup.feed.as_ref().and_then(|f| state.upses.get(f));
    let (mut reading, driver_flags, transfers) = match feed {
        Some(u) if u.status.reading.is_some() => (
            u.status.reading.clone().expect("checked"),
            u.status.statflag,
            u.status.transfers,
        ),
        _ => (
            UpsReading::basic(sup.on_battery, 0.0, 0.0, crate::time::from_unix_ms(now_ms)),
            0,
            0,
        ),
    };
    reading.charge_percent = sup.charge;
    reading.runtime_s = sup.runtime_s;
    reading.flags.on_battery = sup.on_battery;
    reading.flags.online = !sup.on_battery;
    let ups_bits = reading.flags.statflag_bits();
    let event_bits = driver_flags & (statflag::FASTPOLL | statflag::ONBATT_MSG);
    let flag = ups_bits | event_bits | statflag::BATTPRESENT | statflag::PLUGGED;
    crate::view::UpsStatus {
        driver: "cluster".into(),
        reading: Some(reading),
        statflag: flag,
        on_battery: sup.on_battery,
        time_on_battery_s: sup
            .on_battery_since_ms
            .map_or(0, |t| ((now_ms - t).max(0) / 1000) as u32),
        transfers,
        ..Default::default()
    }
}

/// Why a trigger fires for a supply, if it does.
pub fn trigger_reason(t: &Trigger, s: &Supply, now_ms: i64) -> Option<String> {
    if !s.on_battery {
        return None;
    }
    if let (Some(limit), Some(since)) = (t.on_battery_s, s.on_battery_since_ms)
        && now_ms - since >= limit as i64 * 1000
    {
        return Some(format!("on battery for {} s", limit));
    }
    if let (Some(limit), Some(rt)) = (t.runtime_below_s, s.runtime_s)
        && rt < limit as f64
    {
        return Some(format!("runtime {rt:.0} s below {limit} s"));
    }
    if let (Some(limit), Some(c)) = (t.charge_below, s.charge)
        && c < limit
    {
        return Some(format!("charge {c:.0} % below {limit} %"));
    }
    None
}

/// Local fallback: consensus must never be why a host dies with power on its disks.
/// `no_quorum_for` is how long this node has been unable to commit (None: it can).
/// A host cut off for `grace` whose last known supply is critical, or cut off for
/// `dead_time` while its supply was last known on battery, shuts itself down.
pub fn local_fallback(
    no_quorum_for: Option<std::time::Duration>,
    grace: std::time::Duration,
    dead_time: std::time::Duration,
    last_supply: Option<&Supply>,
) -> Option<String> {
    let lost = no_quorum_for?;
    let s = last_supply?;
    if let Some(e) = &s.emergency
        && lost >= grace
    {
        return Some(format!(
            "no quorum for {} s and this host's supply is critical ({e})",
            lost.as_secs()
        ));
    }
    if s.on_battery && lost >= dead_time {
        return Some(format!(
            "cut off from the cluster for {} s while its feeds were last known on battery",
            lost.as_secs()
        ));
    }
    None
}

/// apcupsd's thresholds applied to a host's supply (charge <= BATTERYLEVEL, runtime
/// <= MINUTES, on battery longer than TIMEOUT); the caller debounces.
pub fn host_threshold(policy: &crate::policy::Policy, s: &Supply, now_ms: i64) -> Option<String> {
    if !s.on_battery {
        return None;
    }
    if let Some(since) = s.on_battery_since_ms.filter(|_| policy.timeout > 0)
        && now_ms - since > i64::from(policy.timeout) * 1000
    {
        return Some(format!(
            "on battery longer than TIMEOUT ({} s)",
            policy.timeout
        ));
    }
    if let Some(c) = s.charge.filter(|c| *c <= f64::from(policy.battery_level)) {
        return Some(format!(
            "charge {c:.0} % at or below BATTERYLEVEL ({} %)",
            policy.battery_level
        ));
    }
    if let Some(r) = s
        .runtime_s
        .filter(|r| *r <= f64::from(policy.minutes) * 60.0)
    {
        return Some(format!(
            "runtime {r:.0} s at or below MINUTES ({})",
            policy.minutes
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    #[test]
    fn local_fallback_rules() {
        use std::time::Duration as D;
        let on_line = Supply {
            on_battery: false,
            on_battery_since_ms: None,
            charge: Some(100.0),
            runtime_s: Some(3000.0),
            emergency: None,
            feed: None,
        };
        let on_batt = Supply {
            on_battery: true,
            on_battery_since_ms: Some(NOW),
            ..on_line.clone()
        };
        let critical = Supply {
            emergency: Some("ups1 signals low battery".into()),
            ..on_batt.clone()
        };
        let (g, d) = (D::from_secs(10), D::from_secs(15));
        // The cluster works: never.
        assert_eq!(local_fallback(None, g, d, Some(&critical)), None);
        // Cut off, on line: never, however long.
        assert_eq!(
            local_fallback(Some(D::from_secs(100_000)), g, d, Some(&on_line)),
            None
        );
        // No known supply (no feeds): never.
        assert_eq!(
            local_fallback(Some(D::from_secs(100_000)), g, d, None),
            None
        );
        // Critical: after the grace period.
        assert_eq!(
            local_fallback(Some(D::from_secs(9)), g, d, Some(&critical)),
            None
        );
        assert!(
            local_fallback(Some(D::from_secs(10)), g, d, Some(&critical))
                .unwrap()
                .contains("critical")
        );
        // On battery, not critical: after dead_time.
        assert_eq!(
            local_fallback(Some(D::from_secs(14)), g, d, Some(&on_batt)),
            None
        );
        assert!(
            local_fallback(Some(D::from_secs(15)), g, d, Some(&on_batt))
                .unwrap()
                .contains("last known on battery")
        );
    }

    #[test]
    fn host_thresholds_are_apcupsds() {
        let p = crate::policy::Policy::default();
        let mut sup = Supply {
            on_battery: true,
            on_battery_since_ms: Some(NOW - 100_000),
            charge: Some(50.0),
            runtime_s: Some(900.0),
            emergency: None,
            feed: None,
        };
        assert_eq!(host_threshold(&p, &sup, NOW), None);
        sup.charge = Some(10.0);
        assert!(
            host_threshold(&p, &sup, NOW)
                .unwrap()
                .contains("BATTERYLEVEL")
        );
        sup.charge = Some(50.0);
        sup.runtime_s = Some(300.0);
        assert!(host_threshold(&p, &sup, NOW).unwrap().contains("MINUTES"));
        sup.runtime_s = Some(900.0);
        let t = crate::policy::Policy {
            timeout: 60,
            ..p.clone()
        };
        assert!(host_threshold(&t, &sup, NOW).unwrap().contains("TIMEOUT"));
        sup.on_battery = false;
        sup.charge = Some(1.0);
        assert_eq!(host_threshold(&p, &sup, NOW), None, "on line: never");
    }
}
