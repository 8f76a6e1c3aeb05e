//! A client writing through the lab's VIP while an operation runs, to
//! measure what a client sees: the gaps in acknowledged writes, and that
//! none is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{lab_vip, root};

/// A client inserting rows through the VIP's read-write port as fast as it
/// can, reconnecting after errors. Only acknowledged (committed) inserts
/// are recorded, with the time of their acknowledgement.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<(i64, SystemTime)>>,
}

impl Writer {
    /// Inserts ids from `first_id + 1` into `table` (a column `id`) as the
    /// superuser (`password`).
    pub fn start(password: &str, table: &str, first_id: i64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let password = password.to_string();
        let insert = format!("insert into {table} (id) values ($1)");
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut acked = Vec::new();
                let mut id = first_id;
                let mut client: Option<tokio_postgres::Client> = None;
                while !flag.load(Ordering::Relaxed) {
                    if client.as_ref().is_none_or(|c| c.is_closed()) {
                        client = connect_vip(&password).await;
                        if client.is_none() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                    let Some(c) = client.as_ref() else { continue };
                    id += 1;
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
                    let insert = c.execute(insert.as_str(), &params);
                    match tokio::time::timeout(Duration::from_secs(3), insert).await {
                        Ok(Ok(1)) => acked.push((id, SystemTime::now())),
                        _ => {
                            client = None;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                acked
            })
        });
        Writer { stop, handle }
    }

    /// Stops the client; returns the longest gap between acknowledged
    /// writes, and the acknowledged ids.
    pub fn finish(self) -> (Duration, Vec<i64>) {
        let acked = self.finish_timed();
        let gap = gaps(&acked, Duration::ZERO)
            .into_iter()
            .map(|(_, gap)| gap)
            .max()
            .unwrap_or_default();
        (gap, acked.into_iter().map(|(id, _)| id).collect())
    }

    /// Stops the client; returns the acknowledged ids with the time of each.
    pub fn finish_timed(self) -> Vec<(i64, SystemTime)> {
        self.stop.store(true, Ordering::Relaxed);
        let acked = self.handle.join().expect("writer thread");
        assert!(acked.len() > 10, "the writer hardly wrote: {}", acked.len());
        acked
    }
}

/// The gaps longer than `over` between consecutive acknowledged writes:
/// (the acknowledgement before the gap, the gap).
pub fn gaps(acked: &[(i64, SystemTime)], over: Duration) -> Vec<(SystemTime, Duration)> {
    acked
        .windows(2)
        .map(|w| (w[0].1, w[1].1.duration_since(w[0].1).unwrap_or_default()))
        .filter(|(_, gap)| *gap > over)
        .collect()
}

/// A connection through the VIP's read-write port, TLS verified with the
/// lab's cluster CA (pg_hba refuses plain connections); `None` when it
/// cannot be made within 5 s.
pub async fn connect_vip(password: &str) -> Option<tokio_postgres::Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(lab_vip())
        .port(5000)
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2))
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let ca = std::fs::read_to_string(root().join("inventories/pki/ca.crt")).expect("the lab's CA");
    let tls = pgdeploy_stack::tls::client_config(&ca).expect("CA");
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
    // connect_timeout bounds the TCP connect only: a balancer whose host
    // went away after accepting (a reboot) would hold the TLS handshake
    // forever.
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), config.connect(tls))
        .await
        .ok()?
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// Runs `sql` through the VIP's read-write port (retrying while it fails
/// for up to a minute).
pub fn vip_query_as(password: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = connect_vip(password).await {
                match c.query(sql, &[]).await {
                    Ok(rows) => return rows,
                    Err(e) if Instant::now() > deadline => panic!("{sql}: {e}"),
                    Err(_) => {}
                }
            }
            assert!(Instant::now() < deadline, "{sql}: the VIP does not answer");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Every acknowledged id is in `table`.
pub fn assert_no_write_lost_in(password: &str, table: &str, acked: &[i64], scenario: &str) {
    let rows = vip_query_as(password, &format!("select id from {table}"));
    let stored: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let lost: Vec<&i64> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{scenario}: {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    println!("{scenario}: {} acknowledged writes, none lost", acked.len());
}

/// Seconds since midnight UTC of `t`, as `say` prints its timestamps.
pub fn of_day(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        % 86_400.0
}

/// Seconds of day of a `[HH:MM:SS.mmm] ...` line.
pub fn stamp(line: &str) -> Option<f64> {
    let inner = line.strip_prefix('[')?.split(']').next()?;
    let mut parts = inner.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The time of day of the first `[HH:MM:SS.mmm]` line of `printed` that
/// contains `what`.
pub fn step_at(printed: &str, what: &str) -> f64 {
    printed
        .lines()
        .filter(|l| l.contains(what))
        .find_map(stamp)
        .unwrap_or_else(|| panic!("no `{what}` line:\n{printed}"))
}

/// Every gap over a second in `acked` lies within `window` (times of day,
/// a second of slack each side); each is printed.
pub fn assert_long_gaps_within(acked: &[(i64, SystemTime)], window: (f64, f64), printed: &str) {
    for (before, gap) in gaps(acked, Duration::from_secs(1)) {
        let start = of_day(before);
        let end = start + gap.as_secs_f64();
        println!("gap in writes: {:.3}s at {start:.3}", gap.as_secs_f64());
        assert!(
            end >= window.0 - 1.0 && start <= window.1 + 1.0,
            "a gap of {:.1}s at {start:.3} outside the switchover ({:.3}..{:.3}):\n{printed}",
            gap.as_secs_f64(),
            window.0,
            window.1
        );
    }
}
