//! Real `upsilond` processes forming a Raft cluster over mutual TLS on loopback
//! (127.0.0.1-5): replication to every node, leader SIGKILL and re-election, restart
//! catch-up, forwarded writes, a foreign-CA node refused, and quorum loss reported.
//! The tests share the machine's two cores, so they run one at a time.

use std::time::Duration;

use upsilon_client::pki::{IssueRequest, Role};
use upsilon_tests::*;

fn has(events: &[(String, String)], name: &str) -> bool {
    events.iter().any(|(n, _)| n == name)
}

#[test]
fn ups_change_reaches_every_node_and_a_restarted_node_catches_up() {
    let _g = serial();
    let mut c = ClusterSpec::new(5, 3)
        .policy("on_battery_delay = 1")
        .start_formed();

    let o = c.cli(1, &["sim", "set", "--on-battery"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for i in 1..=5 {
        let ok = wait_for(Duration::from_secs(15), || {
            let ev = c.events(i);
            (has(&ev, "powerout") && has(&ev, "onbattery")).then_some(())
        });
        assert!(
            ok.is_some(),
            "node {i} never saw the outage: {:?}\n{}",
            c.events(i),
            c.logs()
        );
        let s = c.status(i).unwrap();
        assert_eq!(s["ups"][0]["status"], "ONBATT", "node {i}: {s}");
    }

    // A learner is SIGKILLed, misses events, restarts and catches up from its own log
    // plus the leader's.
    c.kill(5);
    c.cli(1, &["sim", "set", "--on-line"]);
    wait_for(Duration::from_secs(15), || {
        has(&c.events(2), "mainsback").then_some(())
    })
    .expect("mainsback replicated");
    c.start_node(5);
    let ok = wait_for(Duration::from_secs(20), || {
        let ev = c.events(5);
        (has(&ev, "powerout") && has(&ev, "mainsback")).then_some(())
    });
    assert!(
        ok.is_some(),
        "restarted node did not catch up: {:?}\n{}",
        c.events(5),
        c.logs()
    );
    assert_eq!(c.events(5), c.events(1), "same history everywhere");
}

#[test]
fn leader_sigkill_elects_a_new_leader_and_loses_no_event() {
    let _g = serial();
    // The UPS is driven by node 3, so killing the leader does not silence it.
    let mut c = ClusterSpec::new(3, 3)
        .ups_on(&[3])
        .policy("on_battery_delay = 1")
        .start_formed();
    let leader = c.writable_leader(1).expect("leader") as usize;
    assert_eq!(leader, 1, "node 1 bootstrapped, so it leads first");

    c.cli(3, &["sim", "set", "--on-battery"]);
    wait_for(Duration::from_secs(15), || {
        has(&c.events(1), "onbattery").then_some(())
    })
    .expect("onbattery on the leader");

    c.kill(leader);
    let new_leader = wait_for(Duration::from_secs(20), || {
        c.writable_leader(2).filter(|l| *l != 1)
    })
    .unwrap_or_else(|| panic!("no new leader after SIGKILL\n{}", c.logs()));
    assert!(new_leader == 2 || new_leader == 3);

    // The owner keeps reporting through the new leader: mains return, then a new outage.
    c.cli(3, &["sim", "set", "--on-line"]);
    wait_for(Duration::from_secs(15), || {
        has(&c.events(2), "mainsback").then_some(())
    })
    .expect("mainsback after failover");
    let before: Vec<_> = c.events(2);

    // The old leader restarts and catches up with everything, in the same order.
    c.start_node(1);
    let ok = wait_for(Duration::from_secs(20), || {
        (c.events(1) == c.events(2)).then_some(())
    });
    assert!(
        ok.is_some(),
        "old leader's history {:?} != {:?}\n{}",
        c.events(1),
        c.events(2),
        c.logs()
    );
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["powerout", "onbattery", "offbattery", "mainsback"],
        "nothing lost or doubled"
    );
}

#[test]
fn followers_forward_writes_and_membership_changes_including_removal() {
    let _g = serial();
    let c = ClusterSpec::new(3, 2).ups_on(&[2]).start_formed();
    // Node 2 is a follower; its UPS reports are forwarded to the leader.
    wait_for(Duration::from_secs(10), || {
        let s = c.status(3)?;
        (s["ups"][0]["name"] == "ups2").then_some(())
    })
    .expect("node 2's UPS visible on node 3");

    // A membership change sent to a learner (node 3) is forwarded to the leader.
    let o = c.cli(3, &["nodes", "promote", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("n3(3)"), "{}", stdout(&o));
    c.wait_formed(2, 3, 0, Duration::from_secs(20));
    let o = c.cli(2, &["nodes"]);
    let t = stdout(&o);
    assert!(
        t.contains("n1") && t.contains("leader") && t.contains("accepting writes"),
        "{t}"
    );
    let o = c.cli(3, &["nodes", "demote", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.wait_formed(1, 2, 1, Duration::from_secs(20));
    // Removal, asked of a follower, leaves two voters and an event in the history.
    let o = c.cli(2, &["nodes", "remove", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.wait_formed(1, 2, 0, Duration::from_secs(20));
    let o = c.cli(1, &["events"]);
    assert_says(&stdout(&o), "Node n3 left the cluster.");
}

#[test]
fn a_node_with_another_cas_certificate_cannot_join() {
    let _g = serial();
    let mut c = ClusterSpec::new(2, 2).ups_on(&[]).start_formed();
    // An intruder: node 3's certificate comes from another CA, so it is refused.
    let other = TestPki::new();
    other.issue(&IssueRequest::new(
        "n3",
        Role::Node,
        vec!["127.0.0.3".into()],
        30,
    ));
    let certs = c.pki.certs();
    for f in ["n3.pem", "n3.key"] {
        std::fs::copy(other.certs().join(f), certs.join(f)).unwrap();
    }
    // It trusts our CA (so it gets as far as presenting its certificate).
    let cfg = format!(
        "[node]\nname = \"n3\"\nlisten = \"127.0.0.3:{p}\"\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/n3.pem\"\nkey = \"certs/n3.key\"\n[cluster]\nid = 3\ndata_dir = \"data-n3\"\nseeds = [\"127.0.0.1:{p}\"]\nvoter = true\n",
        p = c.port
    );
    let path = c.pki.path().join("intruder.toml");
    std::fs::write(&path, cfg).unwrap();
    let log = c.pki.path().join("intruder.log");
    let mut child = std::process::Command::new(bin("upsilond"))
        .arg("--config")
        .arg(&path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Both sides say it: node 1 refused the certificate, the intruder cannot join.
    let n1 = || c.nodes[0].as_ref().unwrap().log_text();
    let intr = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(Duration::from_secs(20), || {
        (n1().contains("not signed by this cluster's CA")
            && intr().contains("cannot join the cluster yet"))
        .then_some(())
    })
    .unwrap_or_else(|| panic!("node 1 log:\n{}\nintruder log:\n{}", n1(), intr()));
    let _ = child.kill();
    let _ = child.wait();
    let s = c.status(1).unwrap();
    assert_eq!(s["cluster"]["voters"], 2);
    assert_eq!(s["cluster"]["learners"], 0);
    c.kill(1);
}

#[test]
fn five_voters_survive_two_down_and_report_no_quorum_with_three_down() {
    let _g = serial();
    let mut c = ClusterSpec::new(5, 5)
        .ups_on(&[5])
        .policy("on_battery_delay = 1")
        .start_formed();
    c.kill(1);
    c.kill(2);
    let ok = wait_for(Duration::from_secs(20), || c.writable_leader(5));
    assert!(
        ok.is_some(),
        "no writable leader with 3 of 5 voters\n{}",
        c.logs()
    );
    c.cli(5, &["sim", "set", "--on-battery"]);
    wait_for(Duration::from_secs(15), || {
        has(&c.events(3), "powerout").then_some(())
    })
    .expect("writes still commit with 2 of 5 voters down");

    c.kill(3);
    let s = wait_for(Duration::from_secs(20), || {
        let s = c.status(4)?;
        (s["cluster"]["writable"] == false).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "node 4 still claims to accept writes with 3 of 5 voters down\n{}",
            c.logs()
        )
    });
    let detail = s["cluster"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("quorum") || detail.contains("no leader"),
        "{detail}"
    );
    let o = c.cli(4, &["status"]);
    assert_says(&stdout(&o), "NOT ACCEPTING WRITES");
}

#[test]
fn a_silent_ups_owner_makes_its_ups_comm_lost_everywhere() {
    let _g = serial();
    let mut c = ClusterSpec::new(3, 3).ups_on(&[3]).start_formed();
    wait_for(Duration::from_secs(10), || {
        (c.status(1)?["ups"][0]["status"] == "ONLINE").then_some(())
    })
    .expect("ups3 reported");
    c.kill(3);
    // stale_after_ms is 3000 in the test clusters.
    let ok = wait_for(Duration::from_secs(15), || {
        let s = c.status(2)?;
        (s["ups"][0]["status"] == "COMMLOST").then_some(())
    });
    assert!(
        ok.is_some(),
        "ups3 not marked comm-lost: {:?}\n{}",
        c.status(2),
        c.logs()
    );
    assert!(has(&c.events(1), "commfailure"));
    c.start_node(3);
    wait_for(Duration::from_secs(15), || {
        (c.status(1)?["ups"][0]["status"] == "ONLINE").then_some(())
    })
    .expect("ups3 back after its owner restarted");
    assert!(has(&c.events(2), "commok"));
}

#[test]
fn raft_service_refuses_garbage_and_non_node_certificates_clearly() {
    let _g = serial();
    let c = ClusterSpec::new(1, 1).ups_on(&[]).start_formed();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let call = |who: &str, json: &[u8]| {
        let (ca, cert, key) = c.pki.files(who);
        let opts = upsilon_client::rpc::ClientOptions {
            endpoint: c.addr(1).to_string(),
            ca,
            identity: Some((cert, key)),
        };
        let json = json.to_vec();
        rt.block_on(async move {
            let ch = upsilon_client::rpc::connect(&opts).await.unwrap();
            upsilon_proto::v1::raft_service_client::RaftServiceClient::new(ch)
                .vote(upsilon_proto::v1::RaftPayload { json })
                .await
        })
    };
    let e = call("n1", b"{not json").unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("malformed raft message"), "{e:?}");
    let e = call("operator", b"{}").unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("needs role node"), "{e:?}");
    // The node is unharmed.
    assert_eq!(c.status(1).unwrap()["cluster"]["writable"], true);
}

/// The daemon's own logs at its default level, as an operator reads them: no line over
/// 300 bytes (openraft's structures stay out), no warning on a healthy bootstrap, join
/// or clean restart, the leadership in one line, a voter that is down said once (then
/// once a minute) and its return said once, and a voter restarting after a clean stop
/// does not depose the healthy leader.
#[test]
fn the_logs_say_what_matters_once_in_lines_an_operator_reads() {
    let _g = serial();
    let mut c = ClusterSpec::new(3, 3).default_log().start_formed();
    let term = |c: &TestCluster| -> Option<(String, u64)> {
        let s = c.status(1)?;
        Some((
            s["cluster"]["leader"].as_str()?.to_string(),
            s["cluster"]["term"].as_u64()?,
        ))
    };
    let before = wait_for(Duration::from_secs(10), || term(&c)).expect("a leader");
    let leader: usize = before.0.trim_start_matches('n').parse().unwrap();
    let victim = if leader == 3 { 2 } else { 3 };

    c.stop(victim, Duration::from_secs(15));
    // Several seconds down: openraft retries several times a second.
    let said = format!("node {victim} is unreachable");
    wait_for(Duration::from_secs(20), || {
        c.log_of(leader).contains(&said).then_some(())
    })
    .unwrap_or_else(|| panic!("the leader never said n{victim} is down\n{}", c.logs()));
    // The fault's length: 4 s more down, a dozen more retries, still said once.
    std::thread::sleep(Duration::from_secs(4));
    c.start_node(victim);
    let back = format!("node {victim} answers again");
    wait_for(Duration::from_secs(20), || {
        c.log_of(leader).contains(&back).then_some(())
    })
    .unwrap_or_else(|| panic!("the leader never said n{victim} is back\n{}", c.logs()));
    c.wait_formed(leader, 3, 0, Duration::from_secs(20));

    let after = term(&c).expect("a leader");
    assert_eq!(
        before,
        after,
        "a voter restarting after a clean stop deposed the leader\n{}",
        c.logs()
    );
    let log = c.log_of(leader);
    assert_eq!(log.matches(&said).count(), 1, "{log}");
    assert_eq!(log.matches(&back).count(), 1, "{log}");
    assert!(
        log.contains(&format!(
            "leader: n{leader} (id {leader}), term {}",
            before.1
        )),
        "{log}"
    );
    for i in 1..=3 {
        let log = c.log_of(i);
        for l in log.lines() {
            assert!(l.len() <= 300, "n{i}: a line of {} bytes: {l}", l.len());
            let warns = l.contains(" WARN ") || l.contains(" ERROR ");
            assert!(
                !warns || l.contains(&said),
                "n{i}: a warning in a healthy cluster: {l}\n{log}"
            );
        }
    }
}
