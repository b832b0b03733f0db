//! The worker pool: a node's costly arithmetic (a DKG's decoding, `part2` and `part3`; a
//! signer's shares, a coordinator's aggregation) runs here, on one thread per core, first come
//! first served, so that the tasks that move messages (the swarm's, the node's) never wait
//! behind it and a node uses every core: a participant busy with `part3` still answers pings,
//! forwards broadcasts and answers pulls.
//!
//! There is one pool per process ([`Workers::shared`]): nodes that share a process (tests,
//! benchmarks, `localnet`) share its cores, as nodes on one machine would.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of worker threads taking jobs from one queue, first come first served (cheap to
/// clone; clones share the threads). The threads live as long as the pool: handing a job over
/// costs one queue push, not a thread.
#[derive(Clone, Debug)]
pub struct Workers {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

impl Workers {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("frostnode-worker-{i}"))
                .spawn(move || loop {
                    // One thread waits on the queue at a time; the others wait for the lock.
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A job that panics takes only itself down: its result is never sent.
                        Ok(job) => {
                            let _ = catch_unwind(AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start a worker thread");
            }
        }
        Workers { jobs, threads }
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

    /// Queues `job`; it runs on the first free thread. `false` if the pool is gone.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> bool {
        self.jobs.send(Box::new(job)).is_ok()
    }

    /// Runs `job` on the pool and waits for its result; `None` if the job panicked or the pool
    /// is gone.
    pub async fn run<T, F>(&self, job: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        if !self.spawn(move || {
            let _ = tx.send(job());
        }) {
            return None;
        }
        rx.await.ok()
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
