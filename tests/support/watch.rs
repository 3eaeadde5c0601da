//! Every node's `Watch` stream at once, for the latency benches.

use std::time::{Duration, Instant};

use crate::TestCluster;

/// The `p`th percentile (0-100) of sorted values, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Every node's `Watch` events, as (node number, event name, arrival time), for the
/// latency benches. The watch tasks stop when this is dropped.
pub struct EventWatch {
    rx: tokio::sync::mpsc::UnboundedReceiver<(usize, String, Instant)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    nodes: usize,
}

impl EventWatch {
    /// Opens a `Watch` stream on nodes 1..=`nodes` of `c`.
    pub async fn start(c: &TestCluster, nodes: usize) -> EventWatch {
        use upsilon_proto::v1 as pb;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for i in 1..=nodes {
            let o = c.operator_options(i);
            let ch = upsilon_client::rpc::connect(&o).await.expect("connect");
            let mut stream = pb::power_service_client::PowerServiceClient::new(ch)
                .watch(pb::WatchRequest {})
                .await
                .expect("watch")
                .into_inner();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(u)) = stream.message().await {
                    if let Some(pb::watch_update::Update::Event(e)) = u.update {
                        let _ = tx.send((i, e.name, Instant::now()));
                    }
                }
            }));
        }
        EventWatch { rx, tasks, nodes }
    }

    /// Forgets the events received so far.
    pub fn clear(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// Waits until every node has delivered event `want`; returns each node's delay
    /// after `t0` in milliseconds, in arrival order (the last is "applied on every node").
    pub async fn until_all(&mut self, want: &str, t0: Instant, timeout: Duration) -> Vec<f64> {
        let mut seen = vec![false; self.nodes + 1];
        let mut delays = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while delays.len() < self.nodes {
            let Ok(Some((i, name, at))) = tokio::time::timeout_at(deadline, self.rx.recv()).await
            else {
                panic!(
                    "only {} of {} nodes applied {want} within {timeout:?}",
                    delays.len(),
                    self.nodes
                );
            };
            if name == want && !seen[i] {
                seen[i] = true;
                delays.push(at.duration_since(t0).as_secs_f64() * 1000.0);
            }
        }
        delays
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Fails and restores mains `rounds` times through `mains` (`true`: fail), each time
/// waiting until every node applied the event (`powerout`, then `mainsback`), `pause`
/// between rounds; returns each round's delay until the last node had it, in ms.
pub async fn mains_round_trips(
    watch: &mut EventWatch,
    rounds: usize,
    pause: Duration,
    mains: impl Fn(bool),
) -> Vec<f64> {
    watch.clear();
    let mut every = Vec::new();
    for r in 0..rounds {
        let fail = r % 2 == 0;
        let want = if fail { "powerout" } else { "mainsback" };
        let t0 = Instant::now();
        mains(fail);
        let delays = watch.until_all(want, t0, Duration::from_secs(9)).await;
        every.extend(delays.last());
        tokio::time::sleep(pause).await;
    }
    every
}
