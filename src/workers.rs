//! The worker pool: a node's costly arithmetic (decoding DKG packages, `part2`, `part3`) runs
//! here, on at most one blocking thread per core, first come first served, so that the tasks
//! that move messages (the swarm's, the node's) never wait behind it: a participant busy with
//! `part3` still answers pings, forwards broadcasts and answers pulls.
//!
//! There is one pool per process ([`Workers::shared`]): nodes that share a process (tests,
//! benchmarks, `localnet`) share its cores, as nodes on one machine would.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

/// A bounded pool of blocking threads (cheap to clone; clones share the bound).
#[derive(Clone, Debug)]
pub struct Workers {
    permits: Arc<Semaphore>,
    threads: usize,
}

impl Workers {
    /// A pool that runs at most `threads` jobs at once (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        Workers {
            permits: Arc::new(Semaphore::new(threads)),
            threads,
        }
    }

    /// The process's pool: one thread per core.
    pub fn shared() -> Self {
        static SHARED: OnceLock<Workers> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                Workers::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
            })
            .clone()
    }

    /// How many jobs run at once at most.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job` on a blocking thread once one of the pool's places is free (jobs are
    /// admitted in the order they asked); `None` if the job panicked or the runtime is
    /// shutting down.
    pub async fn run<T, F>(&self, job: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await;
        result.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_runs_more_jobs_than_threads() {
        let pool = Workers::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut jobs = Vec::new();
        for _ in 0..6 {
            let (pool, running, rx) = (pool.clone(), running.clone(), rx.clone());
            jobs.push(tokio::spawn(async move {
                pool.run(move || {
                    running.fetch_add(1, Ordering::SeqCst);
                    // Each job holds its place until the test lets one go.
                    let _ = rx.lock().unwrap().recv();
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        let started = std::time::Instant::now();
        while running.load(Ordering::SeqCst) < 2 {
            assert!(started.elapsed() < std::time::Duration::from_secs(30));
            tokio::task::yield_now().await;
        }
        // Four more jobs wait; give them a moment in which they could (wrongly) start.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(running.load(Ordering::SeqCst), 2);
        assert_eq!(pool.permits.available_permits(), 0);
        for _ in 0..6 {
            tx.send(()).unwrap();
        }
        for job in jobs {
            assert!(job.await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn a_panicking_job_gives_none_and_frees_its_place() {
        let pool = Workers::new(1);
        assert_eq!(pool.run(|| -> u8 { panic!("boom") }).await, None);
        assert_eq!(pool.run(|| 7).await, Some(7));
    }
}
