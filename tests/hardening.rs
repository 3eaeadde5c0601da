//! What operators do by mistake, on real `upsilond` processes over loopback: two nodes
//! owning one UPS name, a learner restarted with a wiped or truncated data directory,
//! certificates that try to act beyond their role, oversized plans with a paused
//! learner, a full disk, a corrupted store. Each test was written to fail on the code
//! before the hardening issue. The tests share the machine's two cores, so they run one
//! at a time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use upsilon_tests::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn warnings(s: &serde_json::Value) -> String {
    s["cluster"]["warnings"].to_string()
}

fn owner_of(s: &serde_json::Value, ups: &str) -> Option<String> {
    s["nodes"].as_array()?.iter().find_map(|n| {
        n["ups"]
            .as_array()?
            .iter()
            .any(|u| u == ups)
            .then(|| n["name"].as_str().unwrap_or("").to_string())
    })
}

fn count(events: &[(String, String)], name: &str) -> usize {
    events.iter().filter(|(n, _)| n == name).count()
}

#[test]
fn a_second_node_reporting_an_owned_ups_name_is_refused_and_takes_over_only_when_the_owner_is_stale()
 {
    let _g = serial();
    let mut c = TestCluster::start(ClusterSpec {
        nodes: 3,
        voters: 3,
        ups_on: vec![1],
        // Node 2 has a UPS with the same name: an honest mistake.
        ups_toml: vec![(
            2,
            "[[ups]]\nname = \"ups1\"\ndriver = \"sim\"\npoll_interval_ms = 200\n".into(),
        )],
        extra: "[policy]\non_battery_delay = 1\n".into(),
        ..Default::default()
    });
    c.wait_formed(1, 3, 0, Duration::from_secs(40));
    let s = wait_for(Duration::from_secs(15), || {
        let s = c.status(3)?;
        warnings(&s)
            .contains("two nodes report a UPS named ups1")
            .then_some(s)
    })
    .unwrap_or_else(|| panic!("no ownership warning: {:?}\n{}", c.status(3), c.logs()));
    assert_eq!(owner_of(&s, "ups1").as_deref(), Some("n1"), "{s}");
    assert!(warnings(&s).contains("n1 owns it"), "{}", warnings(&s));
    let o = c.cli(3, &["status"]);
    assert!(
        stdout(&o).contains("WARNING: two nodes report"),
        "{}",
        stdout(&o)
    );
    assert!(c.nodes[1].as_ref().unwrap().wait_log(
        "node n1 already owns a UPS named ups1",
        Duration::from_secs(5)
    ));

    // The rival goes on battery: the cluster must not believe it. Before the fix the
    // owner flipped with every report and each flip was an outage.
    let o = c.cli(2, &["sim", "set", "--on-battery"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let s = c.status(3).expect("status");
        assert_eq!(owner_of(&s, "ups1").as_deref(), Some("n1"), "{s}");
        assert_eq!(s["ups"][0]["status"], "ONLINE", "{s}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let ev = c.events(3);
    assert_eq!(count(&ev, "ownerconflict"), 1, "{ev:?}");
    assert_eq!(count(&ev, "onbattery"), 0, "{ev:?}");
    assert_eq!(count(&ev, "outage"), 0, "{ev:?}");

    // The owner dies: once it is stale (3 s here), the other node takes the name over.
    c.kill(1);
    let s = wait_for(Duration::from_secs(20), || {
        let s = c.status(3)?;
        (owner_of(&s, "ups1").as_deref() == Some("n2")).then_some(s)
    })
    .unwrap_or_else(|| panic!("n2 never took ups1 over: {:?}\n{}", c.status(3), c.logs()));
    assert_eq!(s["ups"][0]["status"], "ONBATT", "{s}");
}
